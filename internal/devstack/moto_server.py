"""Run moto's server with two fixes that matter for this project's tests.

1. EventBridge delivery to targets builds a fresh JSONPath parser (a PLY
   grammar) for each of eight input paths on every event: ~0.3 s per event.
   The parsed paths are immutable, so they are memoised.

2. TransactWriteItems backs up every table it touches with a deep copy and
   restores those copies when the transaction is cancelled. The copy costs
   O(table size) per transaction, and the restore throws away whatever
   other request threads wrote in the meantime: a cancelled transaction
   (e.g. a redelivered observation) silently undid concurrent commits.
   DynamoDB does neither. Here every DynamoDB request runs under one lock,
   and a transaction backs up only the items it touches.
"""
import copy
import functools
import sys
import threading

try:
    import jsonpath_ng.ext

    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=1024)(jsonpath_ng.ext.parse)
except ImportError:
    pass

import moto.dynamodb.models as ddb_models
import moto.dynamodb.responses as ddb_responses

_lock = threading.RLock()
_deepcopy = copy.deepcopy


class _NoTableCopies:
    """The copy module as moto's DynamoDB backend sees it: tables are not
    copied (the item-level undo below replaces that backup)."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(obj, *args, **kwargs):
        if isinstance(obj, ddb_models.Table):
            return obj
        return _deepcopy(obj, *args, **kwargs)


ddb_models.copy = _NoTableCopies()

_call_action = ddb_responses.DynamoHandler.call_action


def _serialised_call_action(self):
    with _lock:
        return _call_action(self)


ddb_responses.DynamoHandler.call_action = _serialised_call_action

_transact_write_items = ddb_models.DynamoDBBackend.transact_write_items


def _item_key(table, op_type, op):
    if op_type != "Put":
        return op.get("Key")
    attrs = op.get("Item", {})
    key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs.get(table.range_key_attr)
    return key


def _transact_with_item_undo(self, transact_items):
    with _lock:
        undo = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = self.tables.get(op.get("TableName"))
                if table is None:
                    continue
                key = _item_key(table, op_type, op)
                current = self.get_item(table.name, key)
                before = _deepcopy(current.to_json()["Attributes"]) if current else None
                undo.append((table.name, key, before))
            except Exception:
                continue  # moto itself reports malformed entries
        try:
            return _transact_write_items(self, transact_items)
        except Exception:
            for table_name, key, before in reversed(undo):
                if before is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before)
            raise


ddb_models.DynamoDBBackend.transact_write_items = _transact_with_item_undo

from moto.server import main  # noqa: E402

sys.argv[0] = "moto_server"
main(sys.argv[1:])
