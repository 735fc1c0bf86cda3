# moto: one local AWS emulator (S3 and DynamoDB) for the s3:// and dynamodb:// backend tests.
#
# Installs `moto[server]` into the shared virtual environment ($TASKTRACK_VENV), starts it on a
# free port of 127.0.0.1 and exports:
#   TASKTRACK_TEST_MOTO_ENDPOINT=http://127.0.0.1:PORT
#   AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 (moto accepts any;
#   each is kept when already set) and AWS_DEFAULT_REGION (for boto3)
#
# Why not `moto_server`: its stock server is multi-threaded (werkzeug `threaded=True`), and moto's
# conditional writes (DynamoDB condition expressions, S3 If-Match / If-None-Match) are a read then
# a write in Python with no lock, so two concurrent requests can both pass the same condition. AWS
# serializes them. We therefore run moto's WSGI app with `run_simple(..., threaded=False)`: one
# request at a time, so every conditional write is atomic as it is on AWS. (Single-threaded
# werkzeug also speaks HTTP/1.0, closing each connection, so no client can hold the server.)
# The cost: the emulator uses one CPU core at most, which is the ceiling in the benchmarks.
#
# Set TASKTRACK_TEST_MOTO_ENDPOINT yourself to use a moto (or real S3-compatible) server you
# started; the script then only checks that it answers.
#
# Under CI=true a failure to install or start moto fails the run (service_unavailable).

# One PID file per shell that sourced this, so that parallel runs never stop each other's moto.
MOTO_PID_FILE="$TASKTRACK_CACHE/moto.$$.pid"
MOTO_LOG="$TASKTRACK_CACHE/moto.log"

# The launcher: moto's WSGI dispatcher (all services, routed by the request) served by werkzeug
# in ONE thread. `moto.server` exports DomainDispatcherApplication, create_backend_app and
# MotoRequestHandler since moto 5; request logging is off because it costs the single core time.
MOTO_LAUNCHER='
import logging, sys
from werkzeug.serving import run_simple
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.core.common_models import BaseModel
logging.getLogger("werkzeug").setLevel(logging.ERROR)
# moto keeps every model object it ever creates in a list for its dashboard; DynamoDB transactions
# copy whole tables, so that list grows without bound (17 GB seen in one test run). Not tracking
# instances keeps moto at about 100 MB; nothing we use reads the list.
BaseModel.__new__ = staticmethod(lambda cls, *args, **kwargs: object.__new__(cls))

# DynamoDB transactions: to roll back, moto deep-copies each table a transaction touches, once
# per item of the transaction, so a transaction costs O(items x table size) of CPU (50 % of
# the time of moto in the benchmarks, and batching transactions made it worse). AWS has no such cost.
# Snapshot only the items the transaction writes, and put those back if it is cancelled: the
# same outcome (all or nothing), in O(items). Pinned by the conformance suite and by the unit
# test of cancelled transactions in crates/tasktrack-dynamodb/tests/emulator.rs.
import copy
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

class _TablesByReference:  # the `copy` module as moto.dynamodb.models sees it
    @staticmethod
    def deepcopy(x, memo=None):
        return x if isinstance(x, Table) else copy.deepcopy(x, memo)

dynamodb_models.copy = _TablesByReference
_stock_transact = dynamodb_models.DynamoDBBackend.transact_write_items

def _item_key(table, attrs):
    hash_key = DynamoType(attrs[table.hash_key_attr])
    if table.range_key_attr is None:
        return hash_key, None
    return hash_key, DynamoType(attrs[table.range_key_attr])

def _transact_write_items(self, transact_items):
    saved = []  # (table, hash key, range key, the item before the transaction or None)
    for entry in transact_items:
        op = next(iter(entry.values()), {})
        table = self.tables.get(op.get("TableName"))
        attrs = op.get("Key") or op.get("Item") or {}
        try:
            hash_key, range_key = _item_key(table, attrs)
        except (AttributeError, KeyError, TypeError):
            continue  # no such table or key: moto rejects the transaction before writing
        before = table.get_item(hash_key, range_key)
        saved.append((table, hash_key, range_key, copy.deepcopy(before)))
    try:
        return _stock_transact(self, transact_items)
    except Exception:
        for table, hash_key, range_key, before in reversed(saved):
            if before is None:
                table.delete_item(hash_key, range_key)
            elif range_key is None:
                table.items[hash_key] = before
            else:
                table.items[hash_key][range_key] = before
        raise

dynamodb_models.DynamoDBBackend.transact_write_items = _transact_write_items
app = DomainDispatcherApplication(create_backend_app)
run_simple(sys.argv[1], int(sys.argv[2]), app, threaded=False, processes=1,
           request_handler=MotoRequestHandler)
'

# True when something answers HTTP at $1 (moto answers GET / with an S3 bucket listing).
moto_answers() {
  curl -s -o /dev/null --max-time 2 "$1/" 2>/dev/null
}

start_moto() {
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"  # the name boto3 reads
  local how='bash -c "source scripts/services/common.sh; source scripts/services/moto.sh; start_moto" (needs python3-venv and PyPI)'

  if [ -n "${TASKTRACK_TEST_MOTO_ENDPOINT:-}" ]; then
    moto_answers "$TASKTRACK_TEST_MOTO_ENDPOINT" || service_unavailable moto "$how"
    return 0
  fi

  mkdir -p "$TASKTRACK_CACHE"
  if ! ensure_venv >>"$MOTO_LOG" 2>&1; then
    service_unavailable moto "$how"
    return 0
  fi
  if ! "$TASKTRACK_VENV/bin/python" -c 'import moto.server, werkzeug' >/dev/null 2>&1; then
    echo "installing moto[server] into $TASKTRACK_VENV"
    if ! "$TASKTRACK_VENV/bin/pip" install --quiet "moto[server]>=5,<6" >>"$MOTO_LOG" 2>&1; then
      service_unavailable moto "$how"
      return 0
    fi
  fi

  local port; port="$(free_port)"
  "$TASKTRACK_VENV/bin/python" -c "$MOTO_LAUNCHER" 127.0.0.1 "$port" >>"$MOTO_LOG" 2>&1 &
  echo $! >"$MOTO_PID_FILE"
  local endpoint="http://127.0.0.1:$port"
  if wait_for "moto_answers $endpoint" 60; then
    export TASKTRACK_TEST_MOTO_ENDPOINT="$endpoint"
    echo "moto (single-threaded) at $endpoint, PID $(cat "$MOTO_PID_FILE"), log $MOTO_LOG"
  else
    tail -n 20 "$MOTO_LOG" >&2 || true
    stop_moto
    service_unavailable moto "$how"
  fi
}

stop_moto() {
  if [ -f "$MOTO_PID_FILE" ]; then
    kill "$(cat "$MOTO_PID_FILE")" 2>/dev/null || true
    rm -f "$MOTO_PID_FILE"
  fi
}
