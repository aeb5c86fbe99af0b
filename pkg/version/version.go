// Package version reports which build of Strait is running.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release, set at link time with
// -ldflags "-X strait.dev/strait/pkg/version.Version=v0.1.0"; builds from a
// checkout report "devel".
var Version = "devel"

// String is the version line every Strait binary prints.
func String(binary string) string {
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				commit = s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("%s %s (commit %s, %s, %s/%s)", binary, Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
