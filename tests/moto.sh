# Sourced (not run) by tests/run.sh and bench/dynamodb-cost.sh, from the repository root:
# installs moto into a virtualenv under target/ (rebuilt when tests/requirements.txt changes),
# starts its DynamoDB server on a free 127.0.0.1 port, one request at a time (moto's
# transactions are not isolated from each other: tests/moto_server.py says why), stops it when
# the sourcing script exits, and sets MOTO_ENDPOINT and the environment the AWS SDK's standard
# provider chain reads: dummy credentials, a region, no instance metadata.

moto_start() {
  command -v python3 >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  }
  local venv=target/test-venv
  local stamp=$venv/requirements.sha256
  local want
  want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
  if [[ ! -x $venv/bin/moto_server || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
    echo "$want" >"$stamp"
  fi

  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p target
  "$venv/bin/python" tests/moto_server.py 127.0.0.1 "$port" >target/moto.log 2>&1 &
  MOTO_PID=$!
  trap 'kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null || true' EXIT
  MOTO_ENDPOINT=http://127.0.0.1:$port
  for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('$MOTO_ENDPOINT/moto-api/')" 2>/dev/null && break
    kill -0 "$MOTO_PID" 2>/dev/null || { echo "moto's server exited:" >&2; cat target/moto.log >&2; exit 1; }
    sleep 0.1
  done

  export MOTO_ENDPOINT
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
}
