package activities

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLastLines(t *testing.T) {
	b := []byte("a\nb\nc\n")
	require.Equal(t, "b\nc\n", string(lastLines(b, 2)))
	require.Equal(t, "a\nb\nc\n", string(lastLines(b, 5)))
	require.Equal(t, "c", string(lastLines([]byte("a\nb\nc"), 1)))
	require.Equal(t, "", string(lastLines(nil, 3)))
}

func TestReadLogTailAndFollow(t *testing.T) {
	a := &HostActivities{LogDir: t.TempDir(), Host: "h"}
	dir := filepath.Join(a.LogDir, "worker-log-1")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, "worker.log")
	require.NoError(t, os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o644))
	env := newActivityEnv(a)

	read := func(req LogRequest) (LogChunk, error) {
		v, err := env.ExecuteActivity(a.ReadLog, req)
		if err != nil {
			return LogChunk{}, err
		}
		var c LogChunk
		require.NoError(t, v.Get(&c))
		return c, nil
	}
	c, err := read(LogRequest{WorkerID: "worker-log-1", Lines: 2, Offset: -1})
	require.NoError(t, err)
	require.Equal(t, "two\nthree\n", c.Text)
	require.EqualValues(t, 14, c.NextOffset)

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, _ = f.WriteString("four\n")
	f.Close()
	c, err = read(LogRequest{WorkerID: "worker-log-1", Offset: c.NextOffset})
	require.NoError(t, err)
	require.Equal(t, "four\n", c.Text)

	_, err = read(LogRequest{WorkerID: "worker-log-../../etc", Lines: 1, Offset: -1})
	require.ErrorContains(t, err, "invalid worker id")
	_, err = read(LogRequest{WorkerID: "worker-log-2", Lines: 1, Offset: -1})
	require.ErrorContains(t, err, "worker-log-2 has no log on host h")
}
