package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func TestContainmentFlagIsChecked(t *testing.T) {
	_, err := chooseContainment("jail", "", "h")
	require.EqualError(t, err, `--containment "jail": must be auto, cgroup or process-group`)
	c, err := chooseContainment(activities.ContainmentProcessGroup, "", "h")
	require.NoError(t, err)
	require.Equal(t, containment{mode: activities.ContainmentProcessGroup}, c)
	_, err = chooseContainment(activities.ContainmentCgroup, filepath.Join(t.TempDir(), "not-a-cgroup"), "h")
	require.ErrorContains(t, err, "--containment cgroup: ")
	c, err = chooseContainment("auto", filepath.Join(t.TempDir(), "not-a-cgroup"), "h")
	require.NoError(t, err)
	require.Equal(t, activities.ContainmentProcessGroup, c.mode)
	require.Contains(t, c.why, "is not in a cgroup v2 hierarchy")
}

// A types file whose limits this host cannot apply is refused at start.
func TestLimitsWithoutCgroupsAreRefusedAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "types.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"types": {"fix-worker": {"resources": {"memory": "1G"}}}}`), 0o644))
	reg, err := workertypes.Load(path)
	require.NoError(t, err)
	_, err = chooseLimiter(reg, containment{mode: activities.ContainmentProcessGroup, why: "no cgroup v2 hierarchy is mounted"}, "h", true)
	require.EqualError(t, err, "worker types fix-worker set resources, which need cgroups; this host contains by process-group: no cgroup v2 hierarchy is mounted")

	l, err := chooseLimiter(workertypes.Defaults(), containment{mode: activities.ContainmentProcessGroup}, "h", false)
	require.NoError(t, err)
	require.Nil(t, l, "no type sets limits: nothing to apply")
}

// The default fence bound is what a lifecycle with the default clocks
// gets: stopped by its cut-off host before the server counts the host
// lost.
func TestDefaultFenceMatchesTheDefaultHostLoss(t *testing.T) {
	bound, grace := activities.FenceBound(activities.DefaultFenceAfter, activities.FenceLimits{HostLossAfter: workflows.DefaultHostLossAfter,
		WatchHeartbeat: workflows.DefaultWatchHeartbeat, Grace: workflows.DefaultShutdownGrace})
	require.Equal(t, activities.DefaultFenceAfter, bound)
	require.Equal(t, workflows.DefaultShutdownGrace, grace)
	require.Equal(t, workflows.DefaultHostLossAfter-30*time.Second, activities.DefaultFenceAfter)
}

// A bad fence bound is refused before anything connects, naming the flag
// or the variable it came from.
func TestBadFenceBoundIsRefusedAtStart(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"--fence-after", "-1s"}, "--fence-after -1s: must be 0 (no self-fencing) or at least 5s"},
		{"", []string{"--fence-after", "2s"}, "--fence-after 2s: must be 0 (no self-fencing) or at least 5s"},
		{"-3s", nil, "WORKER_FENCE_AFTER -3s: must be 0 (no self-fencing) or at least 5s"},
		{"soon", nil, `WORKER_FENCE_AFTER="soon" is not a duration (such as 90s or 2m)`},
		{"soon", []string{"--fence-after", "1s"}, "--fence-after 1s: must be 0 (no self-fencing) or at least 5s"},
	} {
		t.Setenv("WORKER_FENCE_AFTER", tc.env)
		cmd := command()
		cmd.SetArgs(append([]string{"--address", "127.0.0.1:1"}, tc.args...))
		require.EqualError(t, cmd.Execute(), tc.want)
	}
}

// A server that does not answer is waited for (fencing meanwhile); one
// that refuses this program is an error at once.
func TestUnreachableTellsAnOutageFromARefusal(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("connecting: %w", serviceerror.NewUnavailable("connection refused")), true},
		{fmt.Errorf("connecting: %w", serviceerror.NewDeadlineExceeded("no answer")), true},
		{fmt.Errorf("connecting: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("connecting: %w", serviceerror.NewUnavailable("connection error: authentication handshake failed: tls: bad certificate")), false},
		{fmt.Errorf("connecting: %w", serviceerror.NewPermissionDenied("bad key", "")), false},
		{fmt.Errorf("connecting: %w", serviceerror.NewNamespaceNotFound("fleet")), false},
	} {
		require.Equal(t, tc.want, unreachable(tc.err), "%v", tc.err)
	}
}

// A --compat the workflows do not know is refused before anything runs.
func TestBadCompatIsRefusedAtStart(t *testing.T) {
	t.Setenv("WORKER_COMPAT", "")
	cmd := command()
	cmd.SetArgs([]string{"--address", "127.0.0.1:1", "--compat", "r6"})
	require.EqualError(t, cmd.Execute(), `--compat: unknown release "r6": give r7 (the release before the lean lifecycle), or nothing`)
	t.Setenv("WORKER_COMPAT", "r9")
	cmd = command()
	cmd.SetArgs([]string{"--address", "127.0.0.1:1"})
	require.EqualError(t, cmd.Execute(), `--compat: unknown release "r9": give r7 (the release before the lean lifecycle), or nothing`)
}

// A metrics address that cannot be bound, or the fleet's gauges without
// one, is refused before anything connects, as a bad setting (exit 2).
func TestBadMetricsSettingsAreRefusedAtStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	t.Setenv("WORKER_METRICS_LISTEN", "")
	t.Setenv("WORKER_METRICS_FLEET", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics-listen", taken.Addr().String()}, `--metrics-listen "` + taken.Addr().String() + `": listen tcp ` + taken.Addr().String() + `: bind: address already in use`},
		{[]string{"--metrics-listen", "9464"}, `--metrics-listen "9464": give host:port (":9464" for every address): address 9464: missing port in address`},
		{[]string{"--metrics-fleet"}, "--metrics-fleet needs --metrics-listen: the fleet's gauges are served on this program's /metrics"},
	} {
		cmd := command()
		cmd.SetArgs(append([]string{"--address", "127.0.0.1:1", "--fence-after", "0", "--heartbeat-socket", "off", "--log-dir", t.TempDir()}, tc.args...))
		err := cmd.Execute()
		require.EqualError(t, err, tc.want)
		var bad badSetting
		require.ErrorAs(t, err, &bad, "exits 2")
	}
	t.Setenv("WORKER_METRICS_FLEET", "yes please")
	cmd := command()
	cmd.SetArgs([]string{"--address", "127.0.0.1:1", "--fence-after", "0", "--heartbeat-socket", "off", "--log-dir", t.TempDir()})
	err = cmd.Execute()
	require.EqualError(t, err, `WORKER_METRICS_FLEET="yes please" is not true or false`)
	var bad badSetting
	require.ErrorAs(t, err, &bad)
	for _, hook := range []string{"ftp://example.com/x", "teams=https://x.example.com"} {
		t.Setenv("WORKER_METRICS_FLEET", "")
		cmd := command()
		cmd.SetArgs([]string{"--address", "127.0.0.1:1", "--fence-after", "0", "--heartbeat-socket", "off", "--log-dir", t.TempDir(), "--notify-webhook", hook})
		err := cmd.Execute()
		require.ErrorContains(t, err, "--notify-webhook")
		require.ErrorAs(t, err, &bad)
	}
}
