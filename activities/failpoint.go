//go:build failpoints

package activities

import (
	"os"
	"time"
)

// failpoint pauses this program at the named point when the environment
// variable LIFECYCLE_FAILPOINT names it, after creating the file named by
// LIFECYCLE_FAILPOINT_MARK, so that a fault test can kill the program in a
// window too short to hit from the outside. It exists only in binaries built
// with -tags failpoints.
func failpoint(name string) {
	if os.Getenv("LIFECYCLE_FAILPOINT") != name {
		return
	}
	if mark := os.Getenv("LIFECYCLE_FAILPOINT_MARK"); mark != "" {
		_ = os.WriteFile(mark, []byte(name), 0o644)
	}
	time.Sleep(10 * time.Minute)
}
