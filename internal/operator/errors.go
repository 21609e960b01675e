package operator

import (
	"errors"
	"fmt"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// MissingResourceError reports that a table, queue or event bus does not
// exist (or is not visible with the credentials and region in use).
type MissingResourceError struct {
	Kind string // "table", "queue", "event bus"
	Name string
	Err  error
}

func (e *MissingResourceError) Error() string {
	return fmt.Sprintf("%s %s does not exist (check the name, the region and the endpoint)", e.Kind, e.Name)
}

func (e *MissingResourceError) Unwrap() error { return e.Err }

// notFoundCodes are the error codes of a missing resource: a DynamoDB
// table or an EventBridge bus (both ResourceNotFoundException), a queue.
var notFoundCodes = map[string]bool{
	"ResourceNotFoundException":               true,
	"AWS.SimpleQueueService.NonExistentQueue": true,
	"QueueDoesNotExist":                       true,
}

// missing returns a *MissingResourceError when err says that the resource
// does not exist, and err itself otherwise.
func missing(err error, kind, name string) error {
	if err == nil {
		return nil
	}
	var already *MissingResourceError
	if errors.As(err, &already) {
		return err
	}
	var (
		queue *sqstypes.QueueDoesNotExist
		api   smithy.APIError
	)
	switch {
	case errors.As(err, &queue):
		return &MissingResourceError{Kind: kind, Name: name, Err: err}
	case errors.As(err, &api) && notFoundCodes[api.ErrorCode()]:
		return &MissingResourceError{Kind: kind, Name: name, Err: err}
	}
	return err
}
