package workflows

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/workflow"
)

// Every test of this package, the replay of the recorded histories among
// them, fails on a move the table does not have.
func init() {
	illegalMove = func(_ workflow.Context, from, to Status, reason string) {
		panic(fmt.Sprintf("illegal lifecycle move %q -> %q (%s)", from, to, reason))
	}
}

var allStatuses = []Status{StatusPending, StatusRunning, StatusIdle, StatusShuttingDown,
	StatusCompleted, StatusFailed, StatusZombie, StatusCleanedUp}

func TestMovesTable(t *testing.T) {
	for _, c := range []struct {
		from, to Status
		legal    bool
	}{
		{"", StatusPending, true},
		{"", StatusRunning, false},
		{StatusPending, StatusRunning, true},
		{StatusRunning, StatusIdle, true},
		{StatusIdle, StatusRunning, true},
		{StatusFailed, StatusPending, true}, // a restart
		{StatusShuttingDown, StatusFailed, false},
		{StatusShuttingDown, StatusRunning, false},
		{StatusCompleted, StatusPending, false},
		{StatusCleanedUp, StatusZombie, false},
		{StatusZombie, StatusRunning, false},
		{StatusRunning, StatusRunning, false},
	} {
		require.Equal(t, c.legal, CanMove(c.from, c.to), "%q -> %q", c.from, c.to)
	}
}

func TestEveryStatusIsReachableAndOnlyTerminalOnesAreDeadEnds(t *testing.T) {
	for _, s := range allStatuses {
		var in, out int
		for _, m := range moves {
			if m.to == s {
				in++
			}
			if m.from == s {
				out++
			}
		}
		require.NotZero(t, in, "%s cannot be reached", s)
		terminal := s == StatusCompleted || s == StatusCleanedUp
		require.Equal(t, terminal, out == 0, "%s: %d moves out", s, out)
		require.Equal(t, !terminal && s != StatusFailed && s != StatusZombie, s.Live(), "Live(%s)", s)
	}
}

// The README draws the same diagram as states.go, so neither drifts.
func TestReadmeDrawsTheDiagramOfStatesGo(t *testing.T) {
	src, err := os.ReadFile("states.go")
	require.NoError(t, err)
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var diagram []string
	for _, line := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(line, "//  ") || strings.HasPrefix(line, "//   ") {
			diagram = append(diagram, strings.TrimPrefix(line, "// "))
		}
		if strings.HasPrefix(line, "import") {
			break
		}
	}
	require.Greater(t, len(diagram), 20, "the diagram at the top of states.go")
	require.Contains(t, string(readme), "```\n"+strings.Join(diagram, "\n")+"\n```")
}

// TestAlertAt: the level of a late heartbeat, read off the clocks a
// lifecycle of this release carries (VersionOneDeadlineTimer).
func TestAlertAt(t *testing.T) {
	started := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	seen := started.Add(time.Minute)
	clocks := HeartbeatInfo{LastSeen: &seen, WarningAfter: time.Minute, CriticalAfter: 2 * time.Minute, ZombieAfter: 5 * time.Minute}
	spec := func(status Status, hb HeartbeatInfo) WorkerSpec {
		return WorkerSpec{Status: status, StartedAt: &started, Heartbeat: hb}
	}
	noHeartbeat := clocks
	noHeartbeat.LastSeen = nil
	recorded := HeartbeatInfo{LastSeen: &seen, Alert: AlertWarning} // an earlier release's
	ended := clocks
	ended.Alert = AlertCritical
	for _, tc := range []struct {
		name  string
		spec  WorkerSpec
		after time.Duration // since the last heartbeat
		want  string
	}{
		{"fresh", spec(StatusRunning, clocks), 59 * time.Second, ""},
		{"late", spec(StatusRunning, clocks), time.Minute, AlertWarning},
		{"later", spec(StatusIdle, clocks), 2 * time.Minute, AlertCritical},
		{"from the start without a heartbeat", spec(StatusRunning, noHeartbeat), time.Minute, AlertCritical},
		{"pending is never flagged", WorkerSpec{Status: StatusPending, Heartbeat: clocks}, time.Hour, ""},
		{"stopping is not judged", spec(StatusShuttingDown, clocks), time.Hour, ""},
		{"an earlier release keeps its own", spec(StatusRunning, recorded), time.Hour, AlertWarning},
		{"a zombie keeps its critical", spec(StatusZombie, ended), 0, AlertCritical},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.spec.AlertAt(seen.Add(tc.after)))
		})
	}
}
