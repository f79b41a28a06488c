package fleet

import (
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Errors a caller can test with errors.Is.
var (
	// ErrUnknownWorker: no lifecycle has ever had this worker id.
	ErrUnknownWorker = errors.New("unknown worker")
	// ErrAlreadyLive: a spawn asked for the id of a worker that is live.
	ErrAlreadyLive = errors.New("worker is already live")
	// ErrEnded: the worker's lifecycle has ended; it takes no heartbeat,
	// stop or cleanup any more.
	ErrEnded = errors.New("worker has already ended")
	// ErrInvalid: the request was refused before any call; *InvalidError
	// names the fields.
	ErrInvalid = errors.New("invalid request")
	// ErrSpawnFailed: the lifecycle started but the worker could not (no
	// host, the command failed, the budget did not fit); nothing is held.
	ErrSpawnFailed = errors.New("spawn failed")
	// ErrBudgetRefused: the budget could not cover the request. A spawn
	// refused for budget is both ErrSpawnFailed and ErrBudgetRefused.
	ErrBudgetRefused = errors.New("insufficient budget")
	// ErrUnknownLease: Budget.Release of a lease the ledger never held;
	// nothing was given back or written.
	ErrUnknownLease = errors.New("unknown lease")
)

// InvalidError is a request refused before any call, with every bad field.
// Its message is the one the CLI prints, and each field's message is the one
// a lifecycle started with that field would fail with.
type InvalidError struct {
	Fields []*workflows.FieldError
	// what prefixes the fields' messages: "heartbeat: ", "spec x.json: ".
	what string
}

func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		msgs[i] = f.Message
	}
	return ErrInvalid.Error() + ": " + e.what + strings.Join(msgs, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Unwrap gives the field errors, for errors.As(err, **workflows.FieldError).
func (e *InvalidError) Unwrap() []error {
	out := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f
	}
	return out
}

// Field returns the error of the named field (its JSON name), or nil.
func (e *InvalidError) Field(name string) *workflows.FieldError {
	for _, f := range e.Fields {
		if f.Field == name {
			return f
		}
	}
	return nil
}

// invalid makes the InvalidError of a validation error: its field errors,
// or the whole error as one field when it names none. what prefixes the
// message.
func invalid(what string, err error) *InvalidError {
	fields := workflows.FieldErrors(err)
	if len(fields) == 0 {
		fields = []*workflows.FieldError{{Message: strings.ReplaceAll(err.Error(), "\n", "; ")}}
	}
	return &InvalidError{Fields: fields, what: what}
}

// invalidField is an InvalidError of one field.
func invalidField(field, format string, args ...any) *InvalidError {
	return &InvalidError{Fields: []*workflows.FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// applicationMessage is the message of the innermost application error, or
// "" when err carries none.
func applicationMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return ""
}
