package activities

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.temporal.io/sdk/temporal"
)

// Bounds of one log read: a payload must stay far below Temporal's limits.
const (
	maxLogChunk = 256 << 10
	maxLogLines = 10000
)

// LogRequest asks for a worker's log on its host: the last Lines lines when
// Offset is negative, otherwise what was written from Offset on.
type LogRequest struct {
	WorkerID string `json:"worker_id"`
	Host     string `json:"host"`
	Lines    int    `json:"lines"`
	Offset   int64  `json:"offset"`
}

// LogChunk is a piece of a log and where the next read starts.
type LogChunk struct {
	Text       string `json:"text"`
	NextOffset int64  `json:"next_offset"`
}

// ReadLog reads the worker's log. The path is derived from the worker id
// and this host's log folder, never taken from the request, so no request
// can read another file.
func (a *HostActivities) ReadLog(_ context.Context, in LogRequest) (LogChunk, error) {
	if !workerIDPattern.MatchString(in.WorkerID) {
		return LogChunk{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("invalid worker id %q", in.WorkerID), "InvalidRequest", nil)
	}
	f, err := os.Open(filepath.Join(a.LogDir, in.WorkerID, logFileName))
	if os.IsNotExist(err) {
		return LogChunk{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s has no log on host %s", in.WorkerID, a.Host), "NoLog", nil)
	}
	if err != nil {
		return LogChunk{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return LogChunk{}, err
	}
	size := st.Size()
	if in.Offset >= 0 {
		// A log that shrank was replaced: start again from its beginning.
		from := min(in.Offset, size)
		if in.Offset > size {
			from = 0
		}
		buf := make([]byte, min(size-from, maxLogChunk))
		n, err := f.ReadAt(buf, from)
		if err != nil && err != io.EOF {
			return LogChunk{}, err
		}
		return LogChunk{Text: string(buf[:n]), NextOffset: from + int64(n)}, nil
	}
	lines := min(max(in.Lines, 1), maxLogLines)
	from := max(size-maxLogChunk, 0)
	buf := make([]byte, size-from)
	if _, err := f.ReadAt(buf, from); err != nil && err != io.EOF {
		return LogChunk{}, err
	}
	return LogChunk{Text: string(lastLines(buf, lines)), NextOffset: size}, nil
}

// lastLines keeps the last n lines of b.
func lastLines(b []byte, n int) []byte {
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	start := end
	for i := 0; i < n; i++ {
		j := bytes.LastIndexByte(b[:start], '\n')
		if j < 0 {
			return b
		}
		start = j
	}
	return b[start+1:]
}
