package capacity

import (
	"context"
	"errors"
	"fmt"

	"decnet-attribution/internal/itemsize"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// cost is the capacity consumed by one request, in half units.
type cost struct {
	readHalves  int64
	writeHalves int64
}

func (c *cost) add(o cost) {
	c.readHalves += o.readHalves
	c.writeHalves += o.writeHalves
}

func (c cost) double() cost {
	return cost{readHalves: 2 * c.readHalves, writeHalves: 2 * c.writeHalves}
}

func writeCost(size int) cost { return cost{writeHalves: writeHalves(size)} }

func readCost(size int, consistent bool) cost {
	return cost{readHalves: readHalves(size, consistent)}
}

// errUnsupported marks operations that consume capacity the meter cannot
// compute.
var errUnsupported = errors.New("capacity of this operation is not metered")

// call runs the caller's request and returns its output (a *XxxOutput of the
// dynamodb package) or error.
type call func() (any, error)

// measure runs the request through do and returns its capacity. The error
// says why the cost may be incomplete; it never reaches the caller, whose
// output and error are whatever do returned.
func (m *Meter) measure(ctx context.Context, input any, do call) (cost, error) {
	switch in := input.(type) {
	case *dynamodb.GetItemInput:
		return m.getItem(ctx, in, do)
	case *dynamodb.BatchGetItemInput:
		return m.batchGetItem(ctx, in, do)
	case *dynamodb.TransactGetItemsInput:
		return m.transactGetItems(ctx, in, do)
	case *dynamodb.QueryInput:
		return m.query(ctx, in, do)
	case *dynamodb.ScanInput:
		return m.scan(ctx, in, do)
	case *dynamodb.PutItemInput:
		return m.putItem(ctx, in, do)
	case *dynamodb.UpdateItemInput:
		return m.updateItem(ctx, in, do)
	case *dynamodb.DeleteItemInput:
		return m.deleteItem(ctx, in, do)
	case *dynamodb.BatchWriteItemInput:
		return m.batchWriteItem(ctx, in, do)
	case *dynamodb.TransactWriteItemsInput:
		return m.transactWriteItems(ctx, in, do)
	case *dynamodb.ExecuteStatementInput, *dynamodb.BatchExecuteStatementInput, *dynamodb.ExecuteTransactionInput:
		if _, err := do(); err != nil {
			return cost{}, nil
		}
		return cost{}, errUnsupported
	default:
		// Control-plane and other operations consume no read or write units.
		_, _ = do()
		return cost{}, nil
	}
}

// output asserts the type of a request's output.
func output[T any](res any) (T, error) {
	out, ok := res.(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("unexpected output type %T", res)
	}
	return out, nil
}

func projected(projection *string, attributesToGet []string) bool {
	return projection != nil || len(attributesToGet) > 0
}

func (m *Meter) getItem(ctx context.Context, in *dynamodb.GetItemInput, do call) (cost, error) {
	res, err := do()
	if err != nil {
		return cost{}, nil
	}
	out, err := output[*dynamodb.GetItemOutput](res)
	if err != nil {
		return cost{}, err
	}
	consistent := aws.ToBool(in.ConsistentRead)
	if !projected(in.ProjectionExpression, in.AttributesToGet) {
		return readCost(itemsize.Item(out.Item), consistent), nil
	}
	// A projection does not reduce the units: size the whole item.
	size, err := m.storedSize(ctx, aws.ToString(in.TableName), in.Key)
	return readCost(size, consistent), err
}

func (m *Meter) batchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, do call) (cost, error) {
	res, err := do()
	if err != nil {
		return cost{}, nil
	}
	out, err := output[*dynamodb.BatchGetItemOutput](res)
	if err != nil {
		return cost{}, err
	}
	var total cost
	var errs []error
	for table, req := range in.RequestItems {
		consistent := aws.ToBool(req.ConsistentRead)
		unprocessed := make(map[string]bool)
		if u, ok := out.UnprocessedKeys[table]; ok {
			for _, key := range u.Keys {
				unprocessed[keyString(key)] = true
			}
		}
		if !projected(req.ProjectionExpression, req.AttributesToGet) {
			// Each item is rounded on its own; a requested key with no item
			// still costs the minimum.
			items := out.Responses[table]
			for _, item := range items {
				total.add(readCost(itemsize.Item(item), consistent))
			}
			missing := len(req.Keys) - len(unprocessed) - len(items)
			for range max(missing, 0) {
				total.add(readCost(0, consistent))
			}
			continue
		}
		for _, key := range req.Keys {
			if unprocessed[keyString(key)] {
				continue
			}
			size, err := m.storedSize(ctx, table, key)
			if err != nil {
				errs = append(errs, err)
			}
			total.add(readCost(size, consistent))
		}
	}
	return total, errors.Join(errs...)
}

func (m *Meter) transactGetItems(ctx context.Context, in *dynamodb.TransactGetItemsInput, do call) (cost, error) {
	res, err := do()
	if err != nil {
		return cost{}, nil
	}
	out, err := output[*dynamodb.TransactGetItemsOutput](res)
	if err != nil {
		return cost{}, err
	}
	var total cost
	var errs []error
	for i, action := range in.TransactItems {
		get := action.Get
		if get == nil {
			continue
		}
		var size int
		switch {
		case projected(get.ProjectionExpression, nil):
			size, err = m.storedSize(ctx, aws.ToString(get.TableName), get.Key)
			if err != nil {
				errs = append(errs, err)
			}
		case i < len(out.Responses):
			size = itemsize.Item(out.Responses[i].Item)
		}
		total.add(readCost(size, true).double())
	}
	return total, errors.Join(errs...)
}

func (m *Meter) query(ctx context.Context, in *dynamodb.QueryInput, do call) (cost, error) {
	res, err := do()
	if err != nil {
		return cost{}, nil
	}
	out, err := output[*dynamodb.QueryOutput](res)
	if err != nil {
		return cost{}, err
	}
	consistent := aws.ToBool(in.ConsistentRead)
	if !queryNeedsSideRead(in.FilterExpression, len(in.QueryFilter), in.ProjectionExpression, len(in.AttributesToGet), in.Select) {
		return readCost(itemsSize(out.Items), consistent), nil
	}
	size, err := m.queryReadSize(ctx, in)
	return readCost(size, consistent), err
}

func (m *Meter) scan(ctx context.Context, in *dynamodb.ScanInput, do call) (cost, error) {
	res, err := do()
	if err != nil {
		return cost{}, nil
	}
	out, err := output[*dynamodb.ScanOutput](res)
	if err != nil {
		return cost{}, err
	}
	consistent := aws.ToBool(in.ConsistentRead)
	if !queryNeedsSideRead(in.FilterExpression, len(in.ScanFilter), in.ProjectionExpression, len(in.AttributesToGet), in.Select) {
		return readCost(itemsSize(out.Items), consistent), nil
	}
	size, err := m.scanReadSize(ctx, in)
	return readCost(size, consistent), err
}

// existing is the size of the item a write targets as it was before the
// write, learnt from whichever source is available.
type existing struct {
	size  int
	known bool
	err   error
}

// conditionFailedSize returns the size of the item that made a conditional
// write fail. It prefers the item returned with the error, then the size read
// before the request, then reads it now (the failed write left it as it was).
func conditionFailedSize(ccf *types.ConditionalCheckFailedException, before existing, read func() (int, error)) (int, error) {
	switch {
	case ccf.Item != nil:
		return itemsize.Item(ccf.Item), nil
	case before.known:
		return before.size, nil
	default:
		return read()
	}
}

// singleWrite meters a one-item write. The stored item is sized before the
// call unless the call returns it (ReturnValues ALL_OLD); written sizes the
// successful call from its output and what was stored before; a failed
// condition costs the size of the item that failed it.
func singleWrite[T any](read func() (int, error), returnsOld bool, do call, written func(out T, before *existing) (int, error)) (cost, error) {
	var before existing
	if !returnsOld {
		before.size, before.err = read()
		before.known = before.err == nil
	}
	res, err := do()
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		out, oerr := output[T](res)
		if oerr != nil {
			return cost{}, oerr
		}
		size, werr := written(out, &before)
		return writeCost(size), errors.Join(before.err, werr)
	case errors.As(err, &ccf):
		size, serr := conditionFailedSize(ccf, before, read)
		return writeCost(size), serr
	default:
		return cost{}, nil
	}
}

func (m *Meter) putItem(ctx context.Context, in *dynamodb.PutItemInput, do call) (cost, error) {
	table := aws.ToString(in.TableName)
	read := func() (int, error) { return m.storedItemSize(ctx, table, in.Item) }
	allOld := in.ReturnValues == types.ReturnValueAllOld
	return singleWrite(read, allOld, do, func(out *dynamodb.PutItemOutput, before *existing) (int, error) {
		if allOld {
			*before = existing{size: itemsize.Item(out.Attributes), known: true}
		}
		return max(before.size, itemsize.Item(in.Item)), nil
	})
}

func (m *Meter) updateItem(ctx context.Context, in *dynamodb.UpdateItemInput, do call) (cost, error) {
	table := aws.ToString(in.TableName)
	read := func() (int, error) { return m.storedSize(ctx, table, in.Key) }
	return singleWrite(read, in.ReturnValues == types.ReturnValueAllOld, do, func(out *dynamodb.UpdateItemOutput, before *existing) (int, error) {
		switch in.ReturnValues {
		case types.ReturnValueAllOld:
			*before = existing{size: itemsize.Item(out.Attributes), known: true}
		case types.ReturnValueAllNew:
			return max(before.size, itemsize.Item(out.Attributes)), nil
		}
		after, err := read()
		return max(before.size, after), err
	})
}

func (m *Meter) deleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, do call) (cost, error) {
	table := aws.ToString(in.TableName)
	read := func() (int, error) { return m.storedSize(ctx, table, in.Key) }
	allOld := in.ReturnValues == types.ReturnValueAllOld
	return singleWrite(read, allOld, do, func(out *dynamodb.DeleteItemOutput, before *existing) (int, error) {
		if allOld {
			*before = existing{size: itemsize.Item(out.Attributes), known: true}
		}
		return before.size, nil
	})
}

// batchWrite is one request of a BatchWriteItem, sized before the call.
type batchWrite struct {
	key     string
	oldSize int
	newSize int
}

func (m *Meter) batchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, do call) (cost, error) {
	var errs []error
	planned := make(map[string][]batchWrite, len(in.RequestItems))
	for table, reqs := range in.RequestItems {
		for _, req := range reqs {
			var w batchWrite
			var key map[string]types.AttributeValue
			var err error
			switch {
			case req.PutRequest != nil:
				w.newSize = itemsize.Item(req.PutRequest.Item)
				key, err = m.keyOf(ctx, table, req.PutRequest.Item)
			case req.DeleteRequest != nil:
				key = req.DeleteRequest.Key
			default:
				continue
			}
			if err == nil {
				w.key = keyString(key)
				w.oldSize, err = m.storedSize(ctx, table, key)
			}
			if err != nil {
				errs = append(errs, err)
			}
			planned[table] = append(planned[table], w)
		}
	}
	res, err := do()
	if err != nil {
		return cost{}, nil
	}
	out, err := output[*dynamodb.BatchWriteItemOutput](res)
	if err != nil {
		return cost{}, err
	}
	var total cost
	for table, writes := range planned {
		unprocessed := make(map[string]int)
		for _, req := range out.UnprocessedItems[table] {
			switch {
			case req.PutRequest != nil:
				key, err := m.keyOf(ctx, table, req.PutRequest.Item)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				unprocessed[keyString(key)]++
			case req.DeleteRequest != nil:
				unprocessed[keyString(req.DeleteRequest.Key)]++
			}
		}
		for _, w := range writes {
			if unprocessed[w.key] > 0 {
				unprocessed[w.key]--
				continue
			}
			total.add(writeCost(max(w.oldSize, w.newSize)))
		}
	}
	return total, errors.Join(errs...)
}

// transactAction is one action of a TransactWriteItems, sized before the
// call.
type transactAction struct {
	index   int // position in TransactItems
	table   string
	key     map[string]types.AttributeValue
	kind    string // "Put", "Update", "Delete" or "ConditionCheck"
	oldSize int
	newSize int // Put only
}

func (m *Meter) transactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, do call) (cost, error) {
	var errs []error
	actions := make([]transactAction, 0, len(in.TransactItems))
	for i, item := range in.TransactItems {
		var a transactAction
		var err error
		switch {
		case item.Put != nil:
			a = transactAction{table: aws.ToString(item.Put.TableName), kind: "Put", newSize: itemsize.Item(item.Put.Item)}
			a.key, err = m.keyOf(ctx, a.table, item.Put.Item)
		case item.Update != nil:
			a = transactAction{table: aws.ToString(item.Update.TableName), kind: "Update", key: item.Update.Key}
		case item.Delete != nil:
			a = transactAction{table: aws.ToString(item.Delete.TableName), kind: "Delete", key: item.Delete.Key}
		case item.ConditionCheck != nil:
			a = transactAction{table: aws.ToString(item.ConditionCheck.TableName), kind: "ConditionCheck", key: item.ConditionCheck.Key}
		default:
			continue
		}
		a.index = i
		if err == nil {
			a.oldSize, err = m.storedSize(ctx, a.table, a.key)
		}
		if err != nil {
			errs = append(errs, err)
		}
		actions = append(actions, a)
	}
	_, err := do()
	var canceled *types.TransactionCanceledException
	switch {
	case err == nil:
		var total cost
		for _, a := range actions {
			switch a.kind {
			case "Put":
				total.add(writeCost(max(a.oldSize, a.newSize)).double())
			case "Update":
				after, aerr := m.storedSize(ctx, a.table, a.key)
				if aerr != nil {
					errs = append(errs, aerr)
				}
				total.add(writeCost(max(a.oldSize, after)).double())
			case "Delete":
				total.add(writeCost(a.oldSize).double())
			case "ConditionCheck":
				total.add(readCost(a.oldSize, true).double())
			}
		}
		return total, errors.Join(errs...)
	case errors.As(err, &canceled) && conditionFailedIn(canceled):
		// Only the prepare phase ran: each action once, against the item as
		// it stands (the transaction changed nothing).
		var total cost
		for _, a := range actions {
			size := a.oldSize
			if a.index < len(canceled.CancellationReasons) && canceled.CancellationReasons[a.index].Item != nil {
				size = itemsize.Item(canceled.CancellationReasons[a.index].Item)
			}
			if a.kind == "ConditionCheck" {
				total.add(readCost(size, true))
			} else {
				total.add(writeCost(size))
			}
		}
		return total, errors.Join(errs...)
	default:
		return cost{}, nil
	}
}

func conditionFailedIn(e *types.TransactionCanceledException) bool {
	for _, r := range e.CancellationReasons {
		if aws.ToString(r.Code) == "ConditionalCheckFailed" {
			return true
		}
	}
	return false
}
