package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"decnet-attribution/internal/devstack"
)

// fastMotoLauncher runs moto's server with changes that keep a benchmark
// with deep history within minutes, and one that makes it more faithful.
// None changes what a client sees of a single request; the bench
// package's tests run the store contract against it with
// MOTO_FAST_VERIFY=1, which serves every read through both serializers
// and fails the request when they disagree.
//
//  0. DynamoDB requests are served one at a time. moto takes no lock, so
//     two concurrent conditional writes can both pass their condition;
//     DynamoDB's are atomic. (moto's slow transactions hide the race most
//     of the time; fast ones expose it.)
//  1. EventBridge input paths are parsed once (as devstack's launcher does).
//  2. TransactWriteItems keeps a journal of the items it targets instead of
//     deep-copying every table once per action for its rollback. moto's copy
//     makes one transaction cost O(actions × table size): with 100,000
//     stored observations, minutes. The journal restores exactly the
//     targeted items when the transaction is cancelled.
//  3. A Query on a table's own key looks at the items of its partition.
//     moto sorts every item of the table on each Query before picking the
//     partition's, which makes a series read cost O(table size).
//  4. Query, Scan, GetItem and BatchGetItem answers are encoded with
//     json.dumps (binary values in base64, as DynamoDB does) instead of
//     moto's shape-driven serializer, which spends about 1.5 ms per
//     returned item.
const fastMotoLauncher = `
import base64, copy as _copy, functools, json, os, sys, threading
try:
    import jsonpath_ng.ext
    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=1024)(jsonpath_ng.ext.parse)
except ImportError:
    pass

from moto.dynamodb import models as _models
from moto.dynamodb import responses as _responses
from moto.dynamodb.models.table import Table as _Table
from moto.dynamodb.models.dynamo_type import DynamoType as _DynamoType

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
                table.items[h].pop(r, None)
            else:
                table.items[h][r] = item
        raise

_models.DynamoDBBackend.transact_write_items = _journalled_transact

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

_serial = threading.RLock()
_call_action = _responses.DynamoHandler.call_action

def _serialized_call_action(self):
    with _serial:
        return _call_action(self)

_responses.DynamoHandler.call_action = _serialized_call_action

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

from moto.server import main
sys.argv[0] = "moto_server"
main(sys.argv[1:])
`

// FastMotoOptions tune StartFastMoto.
type FastMotoOptions struct {
	// Python is the interpreter with moto installed. Default "python3".
	Python string
	// Verify serves every read through moto's own serializer too and fails
	// the request if the two encodings differ (for tests).
	Verify bool
	// LogPath receives the server's output; empty keeps it in memory.
	LogPath string
}

// StartFastMoto starts a moto server with the launcher described at
// fastMotoLauncher on a free loopback port, and waits until it answers.
// The caller stops it with Moto.Stop.
func StartFastMoto(opts FastMotoOptions) (*devstack.Moto, error) {
	if opts.Python == "" {
		opts.Python = "python3"
	}
	python, err := exec.LookPath(opts.Python)
	if err != nil {
		return nil, fmt.Errorf("moto needs %s on PATH (install Python 3 and `pip install 'moto[server]'`): %w", opts.Python, err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(), "MOTO_FAST_VERIFY=0")
	if opts.Verify {
		env[len(env)-1] = "MOTO_FAST_VERIFY=1"
	}
	p, err := devstack.StartProcess(devstack.ProcessOptions{
		Name:    "moto server (bench launcher)",
		Path:    python,
		Args:    []string{"-c", fastMotoLauncher, "-H", "127.0.0.1", "-p", strconv.Itoa(port)},
		Env:     env,
		LogPath: opts.LogPath,
	})
	if err != nil {
		return nil, err
	}
	m := &devstack.Moto{Endpoint: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Process: p}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !devstack.Answers(ctx, m.Endpoint) {
		select {
		case <-p.Done():
			return nil, fmt.Errorf("moto server exited (%v); its output ends with:\n%s", p.ExitErr(), p.Output())
		case <-ctx.Done():
			_ = m.Stop()
			return nil, fmt.Errorf("moto server did not answer on %s within 30s; its output ends with:\n%s", m.Endpoint, p.Output())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return m, nil
}
