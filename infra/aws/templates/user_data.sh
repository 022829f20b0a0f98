#!/bin/bash
# seed-lb boot script, stack @@STACK@@: infra/aws/templates/user_data.sh, comments left out.
#
# Comment lines after line 2 are dropped when rendered (bytes count under the 16 KB cap).
# For Amazon Linux 2023: cloud-init runs it once, as root, on the first boot. It installs
# Python 3.11, unpacks the app carried below (the instance needs no access to the
# repository) and runs it as a systemd service on port @@APP_PORT@@, with the same command
# the tests use.
set -Eeuo pipefail

# A log file for `sudo cat`, and the console for `aws ec2 get-console-output`.
exec > >(tee -a /var/log/seed-lb-userdata.log) 2>&1
# Every way out but success ends with one marker line, which `make logs` and the doctor look
# for: a failed command (ERR notes its line), a deliberate exit (die), an unset variable, a
# signal. "FAILED at line N: <command> (exit S)"; N counts the rendered script's lines, and
# a command is shown up to its first line break (a heredoc's body stays out).
failed_at=
on_error() { failed_at=${failed_at:-"at line $1: ${2%%$'\n'*}"}; }
on_exit() {
  local status=$?
  ((status == 0)) || echo "seed-lb user data: FAILED${failed_at:+ $failed_at} (exit $status)" >&2
}
on_signal() { failed_at=${failed_at:-"on signal $1"}; exit 1; }
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
trap on_exit EXIT
trap 'on_signal HUP' HUP
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
die() { failed_at="at line ${BASH_LINENO[0]}: $1"; echo "seed-lb user data: $1" >&2; exit 1; }
step() { echo "seed-lb user data: $*"; }
echo "seed-lb user data: start $(date -u +%FT%TZ)"

readonly APP_USER=@@APP_USER@@
readonly APP_HOME=@@APP_HOME@@
readonly STATE_DIR=@@STATE_DIR@@
readonly SERVICE=@@SERVICE@@
readonly APP_PORT=@@APP_PORT@@
readonly IMDS=http://169.254.169.254/latest

# 1. Python 3.11: AL2023's default python3 is 3.9, the app needs 3.11.
step "1/6 python3.11 (dnf)"
dnf install -y --setopt=retries=10 python3.11 python3.11-pip

# 2. A dedicated user without a shell; it owns only the state directory.
step "2/6 user $APP_USER, $APP_HOME"
if ! id -u "$APP_USER" >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir "$APP_HOME" \
    --shell /sbin/nologin "$APP_USER"
fi
install -d -o root -g root -m 0755 "$APP_HOME"
install -d -o "$APP_USER" -g "$APP_USER" -m 0750 "$STATE_DIR"

# 3. The app: a bzip2'ed tar of app/ in base85 (denser than gzip and base64; user data is
#    capped at 16 KB). Python decodes it, checks the digest taken at render time, extracts.
readonly UNPACK='
import base64, hashlib, io, sys, tarfile
data = base64.b85decode("".join(sys.stdin.read().split()))
if hashlib.sha256(data).hexdigest() != sys.argv[1]:
    sys.exit("seed-lb user data: the app archive is corrupt")
safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
with tarfile.open(fileobj=io.BytesIO(data), mode="r:bz2") as tar:
    tar.extractall(sys.argv[2], **safe)
'
step "3/6 the app"
rm -rf "$APP_HOME/app"
python3.11 -c "$UNPACK" @@APP_SHA256@@ "$APP_HOME" <<'SEEDLB_APP_ARCHIVE'
@@APP_ARCHIVE@@
SEEDLB_APP_ARCHIVE

# 4. A venv with the app's pinned requirements; code stays root-owned, read-only to the app.
step "4/6 venv, pip install -r requirements.txt"
python3.11 -m venv "$APP_HOME/venv"
"$APP_HOME/venv/bin/pip" install --no-cache-dir --disable-pip-version-check --retries 10 \
  -r "$APP_HOME/app/requirements.txt"
"$APP_HOME/venv/bin/python" -m compileall -q "$APP_HOME/app"

# 5. The instance id (for X-Served-By), over IMDSv2 only: a session token first, then the GET.
step "5/6 instance id (IMDSv2)"
imds_token=$(curl -fsS --retry 10 --retry-all-errors --retry-delay 1 -X PUT \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$IMDS/api/token")
instance_id=$(curl -fsS --retry 10 --retry-all-errors --retry-delay 1 \
  -H "X-aws-ec2-metadata-token: $imds_token" "$IMDS/meta-data/instance-id")
if [[ ! $instance_id =~ ^i-[0-9a-f]+$ ]]; then
  die "unexpected instance id '$instance_id'"
fi

# 6. The service. StartLimitIntervalSec=0: keep restarting however often it fails.
step "6/6 $SERVICE.service"
cat >"/etc/systemd/system/$SERVICE.service" <<UNIT
[Unit]
Description=seed-lb app (stack @@STACK@@)
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
User=@@APP_USER@@
Group=@@APP_USER@@
WorkingDirectory=@@APP_HOME@@
Environment=SEED_FILE=@@SEED_FILE@@
Environment=INSTANCE_ID=${instance_id}
Environment=PATH=@@APP_HOME@@/venv/bin:/usr/local/bin:/usr/bin:/bin
Environment=PYTHONUNBUFFERED=1
ExecStart=@@APP_HOME@@/venv/bin/python -m app --host 0.0.0.0 --port @@APP_PORT@@
Restart=always
RestartSec=2
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectHome=yes

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now "$SERVICE.service"

# 7. Done only when the app answers locally; otherwise show why and fail the boot script.
if ! curl -fsS --retry 30 --retry-all-errors --retry-delay 1 --max-time 3 \
  "http://127.0.0.1:$APP_PORT/health"; then
  journalctl -u "$SERVICE.service" --no-pager -n 50 >&2 || true
  die "the app did not answer on port $APP_PORT"
fi
echo
echo "seed-lb user data: done $(date -u +%FT%TZ), $instance_id serves port $APP_PORT"
