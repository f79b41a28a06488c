package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseMountinfoLine(t *testing.T) {
	for _, tc := range []struct {
		line  string
		point string
		ok    bool
	}{
		{"36 25 0:31 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate", "/sys/fs/cgroup", true},
		{"40 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup rw", "/sys/fs/cgroup/unified", true},
		{"41 30 0:36 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory", "", false},
		{`42 30 0:37 / /mnt/my\040cgroup rw - cgroup2 none rw`, "/mnt/my cgroup", true},
		{"garbage", "", false},
	} {
		point, ok := parseMountinfoLine(tc.line)
		require.Equal(t, tc.ok, ok, tc.line)
		require.Equal(t, tc.point, point, tc.line)
	}
}

func TestOwnPath(t *testing.T) {
	dir := t.TempDir()
	hybrid := filepath.Join(dir, "hybrid")
	require.NoError(t, os.WriteFile(hybrid, []byte("4:memory:/x\n1:cpu:/\n0::/system.slice/w.service\n"), 0o644))
	p, err := ownPath(hybrid)
	require.NoError(t, err)
	require.Equal(t, "/system.slice/w.service", p)

	v1 := filepath.Join(dir, "v1")
	require.NoError(t, os.WriteFile(v1, []byte("4:memory:/x\n"), 0o644))
	_, err = ownPath(v1)
	require.ErrorContains(t, err, "no cgroup v2 entry")
}

func TestCreateRefusesNamesThatLeaveTheRoot(t *testing.T) {
	for _, name := range []string{"", "..", "a/b", "x.y"} {
		_, err := Create(t.TempDir(), name)
		require.ErrorContains(t, err, "invalid cgroup name", name)
	}
}

// TestContainsWhatLeavesItsSession runs on the host's real cgroup v2
// hierarchy: a member that starts a new session is still listed, and
// cgroup.kill ends it.
func TestContainsWhatLeavesItsSession(t *testing.T) {
	root, err := Detect()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs as root on a host with cgroup v2: %v", err)
		}
		t.Skipf("no usable cgroup v2 here: %v", err)
	}
	dir, err := Create(root, "test-"+t.Name())
	require.NoError(t, err)
	t.Cleanup(func() { _ = Kill(dir); _ = Remove(dir) })

	cg, err := os.Open(dir)
	require.NoError(t, err)
	defer cg.Close()
	cmd := exec.Command("sh", "-c", "setsid sleep 300 & exec sleep 300")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait() }()

	require.Eventually(t, func() bool {
		pids, err := Procs(dir)
		return err == nil && len(pids) == 2
	}, 5*time.Second, 20*time.Millisecond, "the shell's exec'd sleep and the setsid one")
	// A member that moves itself into a cgroup of its own below is still
	// a member.
	sub, err := Create(dir, "agents-own")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0))
	pids, err := Procs(dir)
	require.NoError(t, err)
	require.Len(t, pids, 2)
	require.Contains(t, pids, cmd.Process.Pid)
	require.Error(t, Remove(dir), "a cgroup with members cannot be removed")

	require.NoError(t, Kill(dir))
	require.Eventually(t, func() bool {
		pids, err := Procs(dir)
		return err == nil && len(pids) == 0
	}, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, Remove(dir))
	_, err = Procs(dir)
	require.True(t, errors.Is(err, fs.ErrNotExist))
	require.NoError(t, Kill(dir), "a cgroup that is gone has nothing to kill")
	require.NoError(t, Remove(dir), "removing twice is not an error")
}
