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
trap 'echo "seed-lb user data: FAILED at line ${LINENO}" >&2' ERR
echo "seed-lb user data: start $(date -u +%FT%TZ)"

readonly APP_USER=@@APP_USER@@
readonly APP_HOME=@@APP_HOME@@
readonly STATE_DIR=@@STATE_DIR@@
readonly SERVICE=@@SERVICE@@
readonly APP_PORT=@@APP_PORT@@
readonly IMDS=http://169.254.169.254/latest

# 1. Python 3.11: AL2023's default python3 is 3.9, the app needs 3.11.
dnf install -y --setopt=retries=10 python3.11 python3.11-pip

# 2. A dedicated user without a shell; it owns only the state directory.
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
rm -rf "$APP_HOME/app"
python3.11 -c "$UNPACK" @@APP_SHA256@@ "$APP_HOME" <<'SEEDLB_APP_ARCHIVE'
@@APP_ARCHIVE@@
SEEDLB_APP_ARCHIVE

# 4. A venv with the app's pinned requirements; code stays root-owned, read-only to the app.
python3.11 -m venv "$APP_HOME/venv"
"$APP_HOME/venv/bin/pip" install --no-cache-dir --disable-pip-version-check --retries 10 \
  -r "$APP_HOME/app/requirements.txt"
"$APP_HOME/venv/bin/python" -m compileall -q "$APP_HOME/app"

# 5. The instance id (for X-Served-By), over IMDSv2 only: a session token first, then the GET.
imds_token=$(curl -fsS --retry 10 --retry-all-errors --retry-delay 1 -X PUT \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$IMDS/api/token")
instance_id=$(curl -fsS --retry 10 --retry-all-errors --retry-delay 1 \
  -H "X-aws-ec2-metadata-token: $imds_token" "$IMDS/meta-data/instance-id")
if [[ ! $instance_id =~ ^i-[0-9a-f]+$ ]]; then
  echo "seed-lb user data: unexpected instance id '$instance_id'" >&2
  exit 1
fi

# 6. The service. StartLimitIntervalSec=0: keep restarting however often it fails.
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
  echo "seed-lb user data: the app did not answer on port $APP_PORT" >&2
  exit 1
fi
echo
echo "seed-lb user data: done $(date -u +%FT%TZ), $instance_id serves port $APP_PORT"
