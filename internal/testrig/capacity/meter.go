package capacity

import (
	"context"
	"errors"
	"sort"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
)

// Reader is the part of the DynamoDB API the meter uses for its own reads:
// the items it must size that are in neither the request nor the response,
// and the key schema of tables. It is shaped like *dynamodb.Client, which
// satisfies it. It must be a client the meter is not attached to; if it is,
// the meter's own reads pass through uncounted.
type Reader interface {
	GetItem(ctx context.Context, params *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	Query(ctx context.Context, params *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(ctx context.Context, params *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	DescribeTable(ctx context.Context, params *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

var _ Reader = (*dynamodb.Client)(nil)

// Usage is what a set of requests consumed.
type Usage struct {
	// Requests is the number of API calls made, whatever their outcome
	// (retries of one call by the SDK count once).
	Requests int64
	// RCU is the read capacity units consumed; always a multiple of 0.5.
	RCU float64
	// WCU is the write capacity units consumed; always a whole number.
	WCU float64
}

// Snapshot is the usage counted since the meter was made or last reset.
type Snapshot struct {
	// Operations maps an API operation name ("PutItem", "Query", ...) to its
	// usage. Operations never called are absent.
	Operations map[string]Usage
	// Total is the sum over all operations.
	Total Usage
	// Incomplete is the number of requests whose units could not be fully
	// computed (a side read failed, or the operation is not metered, such as
	// PartiQL statements). Their counted units are a lower bound.
	Incomplete int64
	// Err holds the first errors behind Incomplete (at most maxErrors of
	// them), or nil when Incomplete is 0.
	Err error
}

// Names returns the operation names in the snapshot, sorted.
func (s Snapshot) Names() []string {
	names := make([]string, 0, len(s.Operations))
	for name := range s.Operations {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// maxErrors bounds the errors a meter keeps for Snapshot.Err.
const maxErrors = 8

// counter is the running usage of one operation, in half units.
type counter struct {
	requests    int64
	readHalves  int64
	writeHalves int64
}

// Meter counts the requests and capacity units of the DynamoDB clients it is
// attached to. It is safe for concurrent use; one meter may be attached to
// several clients.
type Meter struct {
	side Reader

	schemaMu sync.Mutex
	schemas  map[string]keySchema

	mu         sync.Mutex
	counters   map[string]*counter
	incomplete int64
	errs       []error
}

// New returns a meter that makes its side reads (item sizes, table key
// schemas) through side, which must not be metered by this meter. Build it
// from the same configuration as the metered client:
//
//	meter := capacity.New(dynamodb.NewFromConfig(cfg))
//	client := dynamodb.NewFromConfig(cfg, meter.Option())
func New(side Reader) *Meter {
	return &Meter{
		side:     side,
		schemas:  make(map[string]keySchema),
		counters: make(map[string]*counter),
	}
}

// Option returns a client option that attaches the meter, for
// dynamodb.NewFromConfig, dynamodb.New, or a single operation call.
func (m *Meter) Option() func(*dynamodb.Options) {
	return m.Attach
}

// Attach adds the meter's middleware to the client options. Attaching the
// same meter twice to one set of options makes every operation fail with a
// duplicate middleware error.
func (m *Meter) Attach(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(&meterMiddleware{meter: m}, middleware.After)
	})
}

// Snapshot returns the usage counted so far.
func (m *Meter) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{
		Operations: make(map[string]Usage, len(m.counters)),
		Incomplete: m.incomplete,
		Err:        errors.Join(m.errs...),
	}
	var total counter
	for name, c := range m.counters {
		s.Operations[name] = c.usage()
		total.requests += c.requests
		total.readHalves += c.readHalves
		total.writeHalves += c.writeHalves
	}
	s.Total = total.usage()
	return s
}

// Reset sets every count back to zero and forgets recorded errors. Cached
// table key schemas are kept.
func (m *Meter) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counters = make(map[string]*counter)
	m.incomplete = 0
	m.errs = nil
}

func (c counter) usage() Usage {
	return Usage{
		Requests: c.requests,
		RCU:      float64(c.readHalves) / 2,
		WCU:      float64(c.writeHalves) / 2,
	}
}

// record adds one request of the named operation.
func (m *Meter) record(op string, c cost, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ctr := m.counters[op]
	if ctr == nil {
		ctr = &counter{}
		m.counters[op] = ctr
	}
	ctr.requests++
	ctr.readHalves += c.readHalves
	ctr.writeHalves += c.writeHalves
	if err != nil {
		m.incomplete++
		if len(m.errs) < maxErrors {
			m.errs = append(m.errs, err)
		}
	}
}

// meterMiddleware sits at the end of the Initialize step, after input
// validation and before retries, so it sees each call once with the caller's
// input and the final output or error.
type meterMiddleware struct {
	meter *Meter
}

func (*meterMiddleware) ID() string { return "CapacityMeter" }

func (mw *meterMiddleware) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
	out middleware.InitializeOutput, md middleware.Metadata, err error,
) {
	if isSideRead(ctx) {
		return next.HandleInitialize(ctx, in)
	}
	op := awsmiddleware.GetOperationName(ctx)
	c, meterErr := mw.meter.measure(ctx, in.Parameters, func() (any, error) {
		out, md, err = next.HandleInitialize(ctx, in)
		return out.Result, err
	})
	if meterErr != nil {
		meterErr = &MeterError{Operation: op, Err: meterErr}
	}
	mw.meter.record(op, c, meterErr)
	return out, md, err
}

// MeterError reports that the units of one request could not be fully
// computed. The request itself was unaffected.
type MeterError struct {
	Operation string
	Err       error
}

func (e *MeterError) Error() string { return "meter " + e.Operation + ": " + e.Err.Error() }

func (e *MeterError) Unwrap() error { return e.Err }
