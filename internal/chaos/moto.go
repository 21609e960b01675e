package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"decnet-attribution/internal/devstack"
)

// motoLauncher runs moto's server with patches that make it fast enough
// for thousands of messages, without changing what any API answers:
//
//   - the EventBridge input-path parser is memoised (as devstack does),
//     under a lock so that concurrent first deliveries build it once;
//   - the server looks up its service modules once, not by listing its
//     package directory on every request (under a global lock);
//   - ReceiveMessage checks a message's retention against the queue's
//     retention period directly, instead of computing every attribute of
//     the queue (three scans of all its messages) for each message returned;
//   - SQS reads the clock with time.time() rather than through datetime
//     arithmetic: the scans of a queue's messages that SendMessage and
//     GetQueueAttributes still make (to count visible and delayed ones)
//     become cheap (EventBridge delivers every event with a SendMessage);
//   - TransactWriteItems saves the items it touches, not a deep copy of
//     every table it touches, to undo a cancelled transaction: the copy
//     made each transaction cost time proportional to the table's size;
//   - the request log is off.
//
// Every transaction is still all or nothing. Concurrent requests remain
// unsafe in moto (see linearizer), which the harness serialises.
const motoLauncher = `
import copy, logging, sys, threading

try:
    import jsonpath_ng.ext
    _parse, _parsed, _parsing = jsonpath_ng.ext.parse, {}, threading.Lock()

    def _memoised_parse(path):
        # Under a lock, so that concurrent first deliveries wait for one
        # parser instead of each building their own.
        with _parsing:
            if path not in _parsed:
                _parsed[path] = _parse(path)
            return _parsed[path]

    jsonpath_ng.ext.parse = _memoised_parse
except ImportError:
    pass

import moto.backends as backends
_modules = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _modules

import time
import moto.sqs.models as sqs_models

_unix_time, _unix_time_millis = sqs_models.unix_time, sqs_models.unix_time_millis
sqs_models.unix_time = lambda dt=None: time.time() if dt is None else _unix_time(dt)
sqs_models.unix_time_millis = lambda dt=None: time.time() * 1000 if dt is None else _unix_time_millis(dt)

def _retained(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > sqs_models.unix_time()

sqs_models.SQSBackend.is_message_valid_based_on_retention_period = _retained

import moto.dynamodb.models as ddb_models

class _TablesNotCopied:
    # Stands in for the copy module inside moto.dynamodb.models: a table
    # is returned as is (the transaction below undoes its own writes);
    # anything else is copied as before.
    def __getattr__(self, name):
        return getattr(copy, name)

    def deepcopy(self, x, *args, **kwargs):
        if isinstance(x, ddb_models.Table):
            return x
        return copy.deepcopy(x, *args, **kwargs)

ddb_models.copy = _TablesNotCopied()
_transact = ddb_models.DynamoDBBackend.transact_write_items

def _touched_key(table, op):
    if "Key" in op:
        return op["Key"]
    item = op["Item"]
    key = {table.hash_key_attr: item[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = item[table.range_key_attr]
    return key

def _transact_write_items(self, transact_items):
    saved = []
    for action in transact_items:
        for op in action.values():
            name = op.get("TableName") if isinstance(op, dict) else None
            if name not in self.tables:
                continue
            try:
                key = _touched_key(self.tables[name], op)
                before = self.get_item(name, key)
            except Exception:
                continue
            saved.append((name, key, None if before is None else copy.deepcopy(before.to_json()["Attributes"])))
    try:
        return _transact(self, transact_items)
    except Exception:
        for name, key, before in reversed(saved):
            if before is None:
                if self.get_item(name, key) is not None:
                    self.delete_item(name, key)
            else:
                self.put_item(name, before, overwrite=True)
        raise

ddb_models.DynamoDBBackend.transact_write_items = _transact_write_items

logging.getLogger("werkzeug").setLevel(logging.WARNING)

from moto.server import main
sys.argv[0] = "moto_server"
main(sys.argv[1:])
`

// Moto is a moto server started for chaos runs.
type Moto struct {
	Endpoint string
	Process  *devstack.Process
}

// StartMoto starts moto's server with motoLauncher's patches on a free
// loopback port; it is killed if this process dies.
func StartMoto(ctx context.Context) (*Moto, error) {
	python, err := exec.LookPath("python3")
	if err != nil {
		return nil, fmt.Errorf("moto needs python3 on PATH with moto installed: %w", err)
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before moto binds it
		port, err := devstack.FreePort()
		if err != nil {
			return nil, err
		}
		p, err := devstack.StartProcess(devstack.ProcessOptions{
			Name: "moto", Path: python, Args: []string{"-c", motoLauncher, "-H", "127.0.0.1", "-p", strconv.Itoa(port)},
		})
		if err != nil {
			return nil, err
		}
		endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
		if last = waitAnswers(ctx, p, endpoint); last == nil {
			return &Moto{Endpoint: endpoint, Process: p}, nil
		}
		_ = p.Stop(time.Second)
	}
	return nil, last
}

func waitAnswers(ctx context.Context, p *devstack.Process, endpoint string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.Done():
			return fmt.Errorf("moto exited (%v); its output ends with:\n%s", p.ExitErr(), p.Output())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if devstack.Answers(ctx, endpoint) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("moto did not answer on %s within a minute; its output ends with:\n%s", endpoint, p.Output())
}

// Stop stops the server.
func (m *Moto) Stop() error { return m.Process.Stop(5 * time.Second) }
