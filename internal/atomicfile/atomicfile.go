// Package atomicfile writes files that are either whole or absent: the
// records of started processes and their exit files must survive a crash
// or a power loss of the host without ever being read half-written.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes path through a temporary file in the same folder, a rename
// and a sync of the folder.
func Write(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename itself is only durable once the folder is synced; without
	// it a power loss could lose the record of a running process.
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
