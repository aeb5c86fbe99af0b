package testpod

import (
	"errors"
	"fmt"
)

// ErrFailed is wrapped by the errors RunConnect and RunDNS return when the
// probe ran and its report says "ok": false: the network, the peer or the
// name did not do what was asked.
var ErrFailed = errors.New("probe failed")

// UsageError reports a malformed request, as opposed to a failed probe: the
// caller, not the network, is wrong. main exits 2 on it.
type UsageError struct {
	Err error
}

func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

// usageErrorf returns a *UsageError with a formatted message.
func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}
