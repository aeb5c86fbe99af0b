package testpod

import (
	"errors"
	"fmt"
	"io"
)

// ErrFailed is wrapped by the errors RunConnect, RunDNS, RunDNSFlood and
// RunPing return when the probe ran and its report says "ok": false: the
// network, the peer or the name did not do what was asked.
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

// finish writes a probe's report as one JSON line and turns its outcome into
// the error the Run functions return: the usage error if the config was
// invalid, ErrFailed if the probe failed, nil if it succeeded.
func finish(w io.Writer, rep any, ok bool, msg string, usage error) error {
	if err := writeJSONLine(w, rep); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if usage != nil {
		return usage
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrFailed, msg)
	}
	return nil
}
