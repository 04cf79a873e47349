#!/bin/bash
# A real MLflow tracking-server outage, far longer than the heartbeat grace, while two
# workers share a grid study (iteration sharing on): the server's whole process group is
# SIGKILLed KILL_AFTER seconds in (default 25), kept down OUTAGE seconds (default 60) and
# started again on the same port and store. Expected: both workers exit 0, no trial fails
# or goes stale, every trial has exactly one MLflow run whose state agrees with Optuna's,
# no run is left RUNNING ("disagreements []").
#   tests/manual/mlflow_outage.sh            (about 4 minutes on 2 cores)
#   KILL_AFTER=25 OUTAGE=100 PORT=5077 tests/manual/mlflow_outage.sh
# Not part of the suite (it takes minutes); run it after touching heartbeats, sharing or
# the write-behind queue.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd); PY=$ROOT/.venv/bin/python; MLF=$ROOT/.venv/bin/mlflow
PORT=${PORT:-5077}
WORK=$(mktemp -d /tmp/rectune-outage-XXXXXX); cd "$WORK"; echo "work folder $WORK"
start_server() {
  OPENBLAS_NUM_THREADS=1 setsid $MLF server --host 127.0.0.1 --port $PORT --backend-store-uri sqlite:///$PWD/mlflow.db \
    --artifacts-destination $PWD/artifacts >> server.log 2>&1 &
  echo $! > server.pid
  for i in $(seq 1 120); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && return 0; sleep 0.5; done
  echo "server did not start"; return 1
}
start_server || exit 1
echo "server up $(date +%T)"
$PY $ROOT/src/split_data.py --data-dir data > /dev/null
for w in 0 1; do
  MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT OPENBLAS_NUM_THREADS=1 $PY $ROOT/src/hyperparameter_tuning.py \
    --model als --search-space grid --n-trials 30 --heartbeat 1 --no-progress --data-dir data \
    --storage $PWD/optuna.journal --study-name outage --output $PWD/w$w/best.json > w$w.log 2>&1 &
  echo $! > w$w.pid
done
sleep ${KILL_AFTER:-25}
echo "killing server $(date +%T)"; kill -9 -- -$(cat server.pid)
# Its uvicorn workers would go on serving the port after the parent alone is killed.
sleep 1; ss -ltn | grep -q ":$PORT " && echo "STILL LISTENING"; curl -sf -m 2 http://127.0.0.1:$PORT/health && echo "STILL ANSWERING"; sleep ${OUTAGE:-60}
echo "restarting server $(date +%T)"; start_server
wait $(cat w0.pid) ; echo "w0 exit $?"; wait $(cat w1.pid); echo "w1 exit $?"
echo "--- w0"; tail -6 w0.log; echo "--- w1"; tail -6 w1.log
MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT $PY - <<'PY'
import collections, optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from mlflow.tracking import MlflowClient
study = optuna.load_study(study_name="outage", storage=JournalStorage(JournalFileBackend("optuna.journal")))
states = collections.Counter(t.state.name for t in study.trials)
print("optuna states", dict(states))
client = MlflowClient()
exp = client.get_experiment_by_name("rectune-als")
runs = client.search_runs([exp.experiment_id], max_results=1000)
status = collections.Counter(r.info.status for r in runs)
print("mlflow statuses", dict(status))
by_trial = {}
for r in runs:
    n = r.data.tags.get("trial_number")
    if n is not None: by_trial.setdefault(int(n), []).append((r.info.status, r.data.tags.get("state")))
bad = []
for t in study.trials:
    rs = by_trial.get(t.number, [])
    want = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": None}[t.state.name]
    if len(rs) != 1 or (want and rs[0][0] != want) or rs[0][1] != t.state.name:
        bad.append((t.number, t.state.name, rs))
print("disagreements", bad)
PY
kill -9 -- -$(cat server.pid) 2>/dev/null; sleep 1
