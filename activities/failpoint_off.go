//go:build !failpoints

package activities

// failpoint is a no-op outside fault-test builds (see failpoint.go).
func failpoint(string) {}
