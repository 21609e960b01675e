"""Run moto's server with fixes that make it faithful to DynamoDB where this
project depends on it, and fast enough for deep histories. None changes what
a client sees of a single request; the store contract runs against it (and,
with MOTO_FAST_VERIFY=1, every read is served through both encoders and the
request fails if they disagree).

0. DynamoDB requests are served one at a time. moto takes no lock, so two
   concurrent conditional writes can both pass their condition; DynamoDB's
   are atomic.
1. TransactWriteItems keeps a journal of the items it targets instead of
   deep-copying every table it touches for its rollback. moto's copy costs
   O(table size) per transaction, and restoring it threw away whatever other
   request threads wrote meanwhile: a cancelled transaction (a redelivered
   observation) silently undid concurrent commits.
2. EventBridge delivery to a target parses eight JSONPath input paths per
   event with a freshly built PLY grammar (~0.3 s per event): parsed paths
   are immutable, so they are memoised.
3. A Query on a table's own key looks only at its partition; moto sorts
   every item of the table on each Query.
4. Query, Scan, GetItem and BatchGetItem answers are encoded with
   json.dumps (binary values in base64, as DynamoDB does) instead of moto's
   shape-driven serializer, which spends about 1.5 ms per returned item.
5. SQS: ReceiveMessage checks a message's retention against the queue's
   retention period directly instead of computing every queue attribute
   (three scans of its messages) per message returned, and the clock is
   read with time.time() rather than datetime arithmetic. The server looks
   up its service modules once rather than listing its package on every
   request, and its request log is off.
"""
import base64
import copy as _copy
import json
import logging
import os
import sys
import threading
import time

# 2. EventBridge input paths parsed once (under a lock, so that concurrent
# first deliveries wait for one parser instead of each building their own).
try:
    import jsonpath_ng.ext

    _parse, _parsed, _parsing = jsonpath_ng.ext.parse, {}, threading.Lock()

    def _memoised_parse(path):
        with _parsing:
            if path not in _parsed:
                _parsed[path] = _parse(path)
            return _parsed[path]

    jsonpath_ng.ext.parse = _memoised_parse
except ImportError:
    pass

# 5. Module lookup once; cheap SQS clock and retention checks; no request log.
import moto.backends as _backends

_modules = tuple(_backends.list_of_moto_modules())
_backends.list_of_moto_modules = lambda: _modules

import moto.sqs.models as _sqs_models

_unix_time, _unix_time_millis = _sqs_models.unix_time, _sqs_models.unix_time_millis
_sqs_models.unix_time = lambda dt=None: time.time() if dt is None else _unix_time(dt)
_sqs_models.unix_time_millis = lambda dt=None: time.time() * 1000 if dt is None else _unix_time_millis(dt)


def _retained(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > _sqs_models.unix_time()


_sqs_models.SQSBackend.is_message_valid_based_on_retention_period = _retained
logging.getLogger("werkzeug").setLevel(logging.WARNING)

from moto.dynamodb import models as _models
from moto.dynamodb import responses as _responses
from moto.dynamodb.models.dynamo_type import DynamoType as _DynamoType
from moto.dynamodb.models.table import Table as _Table


# 0. One DynamoDB request at a time.
_serial = threading.RLock()
_call_action = _responses.DynamoHandler.call_action


def _serialized_call_action(self):
    with _serial:
        return _call_action(self)


_responses.DynamoHandler.call_action = _serialized_call_action


# 1. Transactions journal the items they target.
class _TablePassingCopy:
    def __getattr__(self, name):
        return getattr(_copy, name)

    @staticmethod
    def deepcopy(x, memo=None):
        if isinstance(x, _Table):
            return x
        return _copy.deepcopy(x, memo)


_models.copy = _TablePassingCopy()
_transact = _models.DynamoDBBackend.transact_write_items


def _journalled_transact(self, transact_items):
    journal = []
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = self.tables[op["TableName"]]
            attrs = op["Item"] if op_type == "Put" else op["Key"]
            h = _DynamoType(attrs[table.hash_key_attr])
            r = _DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
            journal.append((table, h, r, _copy.deepcopy(table.get_item(h, r))))
        except Exception:
            continue  # moto rejects the malformed action itself
    try:
        return _transact(self, transact_items)
    except Exception:
        for table, h, r, item in reversed(journal):
            if r is None:
                if item is None:
                    table.items.pop(h, None)
                else:
                    table.items[h] = item
            elif item is None:
                table.items.get(h, {}).pop(r, None)
            else:
                table.items.setdefault(h, {})[r] = item
        raise


_models.DynamoDBBackend.transact_write_items = _journalled_transact


# 3. Queries on the table's key read their partition only.
_local = threading.local()
_query = _Table.query
_all_items = _Table.all_items


def _partition_query(self, hash_key, *args, **kwargs):
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    _local.partition = hash_key if index_name is None and hash_key is not None else None
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _local.partition = None


def _partition_items(self):
    hk = getattr(_local, "partition", None)
    if hk is None:
        return _all_items(self)
    if hk not in self.items:
        return []
    part = self.items[hk]
    items = list(part.values()) if self.range_key_attr else [part]
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


_Table.query = _partition_query
_Table.all_items = _partition_items


# 4. Reads encoded with json.dumps.
_FAST = {"Query", "Scan", "GetItem", "BatchGetItem"}
_VERIFY = os.environ.get("MOTO_FAST_VERIFY") == "1"
_execute = _responses.DynamoResult.execute_result


def _b64(o):
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode("ascii")
    raise TypeError(type(o).__name__)


def _fast_execute(self, context):
    if context.operation_model.name not in _FAST or not isinstance(self.result, dict):
        return _execute(self, context)
    body = json.dumps(self.result, default=_b64, separators=(",", ":"))
    if _VERIFY:
        status, headers, slow = _execute(self, context)
        if json.loads(slow) != json.loads(body):
            raise AssertionError("fast encoding differs from moto's: %s / %s" % (slow[:200], body[:200]))
        return status, headers, body
    return 200, {"Content-Type": "application/x-amz-json-1.0"}, body


_responses.DynamoResult.execute_result = _fast_execute

from moto.server import main  # noqa: E402

sys.argv[0] = "moto_server"
main(sys.argv[1:])
