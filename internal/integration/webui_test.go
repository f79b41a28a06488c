package integration

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// chromium runs Debian's headless Chromium the way this workplace allows
// (no sandbox as root, no background network), with a fresh profile.
func chromium(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	require.NoError(t, err, "Chromium is needed for the Web UI test: `make tools` installs Debian's chromium package")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=15000"}
	return exec.CommandContext(ctx, bin, append(base, args...)...).Output()
}

// TestWebUIShowsARunningLifecycle loads the Web UI's workflows page in a
// real browser and finds a running lifecycle there.
func TestWebUIShowsARunningLifecycle(t *testing.T) {
	h.needsDevServer(t)
	id := newID("sleeper")
	h.spawnOK(t, id, "--type", "sleeper-worker", "--task-id", "task-webui", "--master", "development-master")
	t.Cleanup(func() { h.starterOK(t, "kill", id) })
	page := "http://" + h.uiAddress + "/namespaces/default/workflows"

	var dom string
	require.Eventually(t, func() bool {
		out, err := chromium(t, "--dump-dom", page)
		dom = string(out)
		return err == nil && strings.Contains(dom, workflows.WorkflowID(id))
	}, 60*time.Second, time.Second, "the workflows page lists the lifecycle")
	require.Contains(t, dom, "Running")

	// The schedules are Temporal Schedules: the Web UI's Schedules page
	// lists them.
	h.starterOK(t, "schedule", "install")
	t.Cleanup(func() {
		_, _, _ = h.starter(t, "schedule", "delete")
		_, _, _ = h.starter(t, "schedule", "delete", "--schedule", "sweep")
	})
	require.Eventually(t, func() bool {
		out, err := chromium(t, "--dump-dom", "http://"+h.uiAddress+"/namespaces/default/schedules")
		return err == nil && strings.Contains(string(out), workflows.ArchivalScheduleID) && strings.Contains(string(out), workflows.SweepScheduleID)
	}, 60*time.Second, time.Second, "the Schedules page lists both schedules")

	// `RECORD_SCREENSHOT=1 go test -run TestWebUI ./internal/integration`
	// refreshes the picture in the README.
	if os.Getenv("RECORD_SCREENSHOT") != "" {
		_, err := chromium(t, "--window-size=1500,950", "--screenshot="+h.root+"/docs/web-ui-workflows.png", page)
		require.NoError(t, err)
	}
}
