"""`python -m infra grade ADDRESS` and `grade --roster FILE.csv`: the grader's command line
(make grade LB=..., make grade-class ROSTER=... OUT=...)."""

from __future__ import annotations

import argparse
import json
import sys

from infra.config import STATE_DIR
from infra.errors import UserError
from infra.grade import gradescope
from infra.grade.address import (
    Address,
    Endpoint,
    StateMatch,
    emulator_name,
    instances_from_state,
    parse_address,
    parse_instances,
)
from infra.grade.gradebook import (
    DEFAULT_JOBS,
    ProgressLine,
    grade_class,
    gradebook_csv,
    summary,
    write_json,
)
from infra.grade.grader import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, MAX_REQUESTS, grade
from infra.grade.outputs import check_output, is_stdout, write_output
from infra.grade.report import GET_200
from infra.grade.roster import read_roster
from infra.grade.scoring import load_scheme
from infra.grade.submission import read_submission
from infra.grade.target_health import target_health

EPILOG = f"""\
examples:
  .venv/bin/python -m infra grade my-lb-123.us-east-1.elb.amazonaws.com
  .venv/bin/python -m infra grade 127.0.0.1:8080 --instances 127.0.0.11:5000,127.0.0.12:5000
  .venv/bin/python -m infra grade my-lb-123.us-east-1.elb.amazonaws.com --gradescope r.json
  .venv/bin/python -m infra grade --roster class.csv --out grades.csv [--jobs 32]
  .venv/bin/python -m infra grade --submission /autograder/submission --gradescope results.json

private addresses: with --roster, --gradescope or --submission the grader grades for others,
and refuses any address that is (or resolves to) loopback, private, link-local (the cloud
metadata service), multicast or reserved: a FAIL, and not a byte sent. --allow-private lets
them through, for testing on this machine. A single grade of your own grades loopback too.

bounds: each request (connect, status line, headers, body) within --timeout, the whole
grade within --deadline, at most {MAX_REQUESTS} requests; a dead address costs one --timeout.
A roster run grades --jobs students at a time, each with these same bounds.

exit status: 0 on PASS, 1 on FAIL, 2 on a usage error (130 on Ctrl-C). A roster run exits 0
when every row was graded, whatever the verdicts. Through make, any failure is make's own
exit status 2: scripts should call `.venv/bin/python -m infra grade` directly.
docs: docs/grader.md (checks, bounds, findings), docs/instructors.md (a class, Gradescope)"""


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "grade",
        parents=[common],
        help="check a load balancer (or a class's) the way the autograder will, and say why "
        "it would fail",
        description="Check a load balancer over HTTP the way the autograder will: the name "
        "resolves and port 80 opens, GET / returns a bare integer, POST / {\"num\": N} "
        "reaches every instance, two instances serve, and (with instance addresses) each "
        "instance answers on :5000. Each failure is named in the seed FAQ's terms.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("address", nargs="?", help="the load balancer's DNS name (http://, a "
                        "trailing / and :80 are accepted and removed)")
    parser.add_argument("--instances", default=None, metavar="IP1,IP2",
                        help="instance addresses to check directly (ip means ip:5000; "
                        "host:port allowed). Default: from the state file whose load balancer "
                        "is ADDRESS, if any")
    parser.add_argument("--json", action="store_true",
                        help="print the report (with --roster: one object per student) as JSON")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help="deadline for each request: connect, status line, headers and "
                        f"body together, in seconds (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, metavar="S",
                        help="deadline for the whole grade of one address, in seconds "
                        f"(default: {DEFAULT_DEADLINE:g})")
    parser.add_argument("--gradescope", metavar="FILE", default=None,
                        help="also write Gradescope's results.json to FILE (one test per "
                        "check, scored by --scores); written even when ADDRESS is unusable")
    parser.add_argument("--scores", metavar="FILE", default=None,
                        help="points per check, a TOML or JSON file (default: connect 10, "
                        "get_200 20, body 20, post 20, spread 20, instances 10, the last only "
                        "when instances are given); see docs/instructors.md")
    parser.add_argument("--submission", metavar="FOLDER", default=None,
                        help="with --gradescope: grade a Gradescope submission, the first line "
                        "of the .txt file in FOLDER (the next line: the instances, or none)")
    parser.add_argument("--allow-private", action="store_true",
                        help="with --roster, --gradescope or --submission: grade loopback and "
                        "private addresses too (testing on this machine); without it they are "
                        "refused, as students' addresses must be public")
    group = parser.add_argument_group("a whole class")
    group.add_argument("--roster", metavar="FILE.csv", default=None,
                       help="grade every row of a CSV with 'student' and 'address' columns "
                       "('instances' optional) instead of one ADDRESS")
    group.add_argument("--out", metavar="GRADES.csv", default=None,
                       help="with --roster: write the gradebook here, one row per student "
                       "in roster order")
    group.add_argument("--jobs", type=int, default=None, metavar="N",
                       help=f"with --roster: students graded at once (default: {DEFAULT_JOBS})")
    parser.add_argument("--state-dir", default=STATE_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--aws", action="store_true",
                        help="on a 502/503/504, ask AWS for the targets' health reasons "
                        "(uses --backend/--region; without this flag AWS is never touched)")
    parser.set_defaults(func=run_command)


def _check_bounds(args) -> None:
    if not 0 < args.timeout <= 60:
        raise UserError("--timeout must be between 0 and 60 seconds")
    if not 0 < args.deadline <= 600:
        raise UserError("--deadline must be between 0 and 600 seconds")


def run_command(args) -> int:
    _check_bounds(args)
    if args.roster is not None:
        return run_roster(args)
    _check_one_address_flags(args)
    if args.gradescope:
        check_output(args.gradescope, "--gradescope",
                     [("--scores", args.scores)] if args.scores else [])
    scheme = load_scheme(args.scores)
    address, explicit = _what_to_grade(args, scheme)
    made_up = emulator_name(address, explicit or [], args.state_dir, args.stack)
    if made_up is not None:
        raise UserError(made_up.message())
    instances, source, match = _instances(args, address, explicit)
    public_only = bool(args.gradescope) and not args.allow_private
    report = grade(address, instances, timeout=args.timeout, deadline=args.deadline,
                   public_only=public_only)
    report.instances_source = source
    if args.aws and any(s in (502, 503, 504) for s in report.lb_statuses):
        report.check(GET_200).details += target_health(args, address,
                                                       match.state if match else {})
    lost = None
    if args.gradescope:
        lost = gradescope.write(gradescope.results(report, scheme), args.gradescope)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    sys.stdout.flush()
    _save(lost)
    return 0 if report.passed else 1


def _check_one_address_flags(args) -> None:
    for flag, value in (("--out", args.out), ("--jobs", args.jobs)):
        if value:
            raise UserError(f"{flag} is for a class: add --roster FILE.csv")
    if args.submission is not None:
        for flag, value in (("ADDRESS", args.address), ("--instances", args.instances)):
            if value:
                raise UserError(f"{flag} is not used with --submission: the submission's .txt "
                                "file gives the address and the instances")
        if not args.gradescope:
            raise UserError("--submission needs --gradescope FILE: the student's grade goes "
                            "into Gradescope's results.json")
    elif args.address is None:
        raise UserError("give the load balancer's DNS name (make grade LB=ADDRESS, or "
                        ".venv/bin/python -m infra grade ADDRESS), or a class with --roster "
                        "FILE.csv --out GRADES.csv")


def _what_to_grade(args, scheme) -> tuple[Address, list[Endpoint] | None]:
    """The address, and the instances given with it (None: not given). With --gradescope,
    one that cannot be read still gets the student a results.json saying why."""
    instances_text = args.instances
    try:
        if args.submission is not None:
            sent = read_submission(args.submission)
            print(f"submission: {sent.file}", flush=True)
            address_text, instances_text = sent.address, sent.instances
        else:
            address_text = args.address
        address = parse_address(address_text)
        explicit = parse_instances(instances_text) if instances_text and \
            instances_text.strip() else None
    except UserError as exc:
        if args.gradescope:
            _save(gradescope.write(gradescope.results_for_error(str(exc), scheme),
                                   args.gradescope))
        raise
    return address, explicit


def _instances(args, address: Address, explicit: list[Endpoint] | None
               ) -> tuple[list[Endpoint], str, StateMatch | None]:
    """The instances to grade, where they came from, and the state file that named them."""
    if args.submission is not None or args.instances is not None:
        given = "from the submission" if args.submission is not None else "from --instances"
        return explicit or [], given if explicit else "", None
    match = instances_from_state(address, args.state_dir, args.stack)
    if not match:
        return [], "", None
    made_up = emulator_name(address, match.instances, args.state_dir, args.stack)
    if made_up is not None:
        raise UserError(made_up.message())
    source = f"from {match.path}"
    if match.skipped:
        source += f"; without a public IP: {', '.join(match.skipped)}"
    return match.instances, source, match


def _save(lost: str | None) -> None:
    """A file that could not be written: say where its text went instead (exit 2)."""
    if lost:
        raise UserError(lost)


def run_roster(args) -> int:
    for flag, value in (("ADDRESS", args.address), ("--instances", args.instances),
                        ("--gradescope", args.gradescope), ("--aws", args.aws),
                        ("--submission", args.submission)):
        if value:
            raise UserError(f"{flag} is for one address, not with --roster (the roster's "
                            "'instances' column gives each student's instances)")
    if not args.out and not args.json:
        raise UserError("--roster needs --out GRADES.csv (or --json for the rows on stdout)")
    jobs = DEFAULT_JOBS if args.jobs is None else args.jobs
    if not 1 <= jobs <= 256:
        raise UserError("--jobs must be between 1 and 256")
    if args.out:  # before anything is read or sent: the roster itself is not a gradebook
        inputs = [("--roster", args.roster)] + ([("--scores", args.scores)] if args.scores
                                                else [])
        check_output(args.out, "--out", inputs)
    students = read_roster(args.roster)
    scheme = load_scheme(args.scores)
    if not students:
        raise UserError(f"roster {args.roster} has a header but no student rows")
    public_only = not args.allow_private
    print(f"grading {len(students)} students, {jobs} at a time, each within "
          f"{args.deadline:g} s and {MAX_REQUESTS} requests ({args.timeout:g} s per request)"
          + ("" if public_only else "; private addresses allowed (--allow-private)"),
          file=sys.stderr, flush=True)
    progress = ProgressLine()
    run = grade_class(students, scheme, jobs=jobs, timeout=args.timeout,
                      deadline=args.deadline, progress=progress, public_only=public_only)
    progress.close()
    rows = run.graded()
    lost = None
    if args.out:
        lost = write_output(args.out, gradebook_csv(rows), "the gradebook")
    if args.json:
        write_json(rows, sys.stdout)
    report_to = sys.stderr if args.json or (args.out and is_stdout(args.out)) else sys.stdout
    print(summary(run, jobs), file=report_to)
    if run.interrupted:
        wrote = f"wrote {len(rows)} of {len(students)} students to {args.out}" if args.out \
            else f"printed {len(rows)} of {len(students)} students"
        print(f"interrupted: {wrote}; the other {len(students) - len(rows)} were not graded "
              "(run again to grade everyone)", file=sys.stderr, flush=True)
        if lost:
            print(f"error: {lost}", file=sys.stderr, flush=True)
        return 130
    _save(lost)
    if args.out:
        print(f"gradebook: {args.out} ({len(rows)} rows)", file=report_to)
    return 1 if any(r.error for r in rows) else 0
