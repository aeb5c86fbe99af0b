package straitctl

import "strings"

// isArgsError recognizes cobra's own command-line errors (wrong number of
// arguments, unknown commands, missing required flags), which it returns as
// plain errors.
func isArgsError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unknown command", "accepts ", "requires at least", "required flag(s)", "invalid argument"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
