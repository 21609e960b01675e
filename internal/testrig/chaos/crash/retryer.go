package crash

import (
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// CountingRetryer counts the retries the AWS SDK makes, and makes none
// once the function died.
type CountingRetryer struct {
	aws.RetryerV2
	N    *atomic.Int64
	Dead func() bool // nil: the function never dies in process
}

// IsErrorRetryable implements aws.Retryer.
func (r *CountingRetryer) IsErrorRetryable(err error) bool {
	return (r.Dead == nil || !r.Dead()) && r.RetryerV2.IsErrorRetryable(err)
}

// RetryDelay implements aws.Retryer, counting the retry.
func (r *CountingRetryer) RetryDelay(attempt int, err error) (time.Duration, error) {
	r.N.Add(1)
	return r.RetryerV2.RetryDelay(attempt, err)
}
