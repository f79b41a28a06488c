package integration

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/devserver"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// cutProxy is the network between one worker program and the server: a
// TCP relay the test cuts (every connection dropped, new ones refused) and
// mends.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setCut(true)
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		relay := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go relay(in, out)
		go relay(out, in)
	}
}

// setCut cuts (true) or mends (false) the network.
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

// The partition: a host cut off from the server stops its workers
// within the bound, before the server counts the host lost, and records
// them; when it comes back it reports them, nothing runs twice and every
// token is back. One lifecycle's host-loss bound (30 s) runs out while the
// host is cut off: the server refunds it and the fence has already stopped
// its process. The worker program crashes during the cut and comes back,
// still cut off: it fences from the last answer it recorded. The other's
// (10 min) does not run out: it hears its process's end from the host once
// it is back, as fenced, and is not restarted.
func TestCutOffHostFencesItsWorkers(t *testing.T) {
	const host = "it-host-fence"
	const shortLoss, watchHeartbeat = 30 * time.Second, 5 * time.Second
	proxy := newCutProxy(t, h.address)
	logFile := filepath.Join(h.dir, "worker-"+host+".log")
	stateDir := filepath.Join(h.dir, "state", host)
	program := devserver.WorkerProgram{
		Binary: filepath.Join(h.dir, "bin", "worker"), Address: proxy.addr(), TypesFile: h.typesFile, LogDir: h.logDir,
		StateDir: stateDir, Host: host, LogFile: logFile, Env: []string{"WORKER_FENCE_AFTER=20s"}}
	cmd, err := devserver.StartWorker(context.Background(), h.client, program)
	require.NoError(t, err)
	h.workers[host] = cmd
	t.Cleanup(func() { h.stopWorker(host, syscall.SIGTERM) })

	before := h.budget(t)
	ctx := context.Background()
	short, long := newID("sleeper"), newID("sleeper")
	pids := map[string]int{}
	for id, loss := range map[string]time.Duration{short: shortLoss, long: 10 * time.Minute} {
		spec, err := h.fleet.Spawn(ctx, workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-fence",
			Master: "development-master", Budget: 100, Host: host, MaxRestarts: 3,
			Limits: workflows.Limits{HostLossAfter: loss, WatchHeartbeat: watchHeartbeat}})
		require.NoError(t, err)
		require.Equal(t, workflows.StatusRunning, spec.Status)
		pids[id] = spec.PID
		t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })
		require.NoError(t, h.fleet.Heartbeat(ctx, id, workflows.Heartbeat{TokensUsed: 10, Status: workflows.HeartbeatBusy}))
	}
	// The watches are running: each has told the host its lifecycle's
	// clocks, kept in the process's record.
	for id := range pids {
		require.Eventually(t, func() bool {
			data, err := os.ReadFile(filepath.Join(stateDir, id+".json"))
			var p activities.ProcessInfo
			return err == nil && json.Unmarshal(data, &p) == nil && p.Fence != nil && p.Fence.HostLossAfter > 0
		}, 10*time.Second, 100*time.Millisecond, "the watch of %s keeps its clocks in the record", id)
	}

	cut := time.Now()
	proxy.setCut(true)
	// The worker program crashes during the cut and comes back, still cut
	// off: it fences from the last answer it recorded, not from its start.
	time.Sleep(3 * time.Second)
	h.stopWorker(host, syscall.SIGKILL)
	cmd, err = program.Start()
	require.NoError(t, err)
	h.workers[host] = cmd
	for id, pid := range pids {
		for procfs.Alive(pid) && time.Since(cut) < shortLoss {
			time.Sleep(100 * time.Millisecond)
		}
		require.False(t, procfs.Alive(pid), "%s (pid %d) still runs %s after its host was cut off: past the host-loss bound", id, pid, shortLoss)
	}
	t.Logf("both workers stopped %s after the cut", time.Since(cut).Round(100*time.Millisecond))

	// The server counts the host lost for the short one and refunds it;
	// its process was already stopped.
	spec := h.waitStatus(t, short, workflows.StatusCleanedUp, 90*time.Second)
	require.NotNil(t, spec.Cleanup)
	assert.Contains(t, spec.Cleanup.Reason, "host "+host+" lost")
	assert.EqualValues(t, 100, spec.Cleanup.Refunded)
	require.NotEqual(t, workflows.StatusCleanedUp, h.status(t, long).Status, "the long one waits for its host")
	// The short one's bound: its 30 s host loss and a fifth of its 5 s
	// watch heartbeat, less its 5 s grace, the kill's 5 s and the fence's
	// 8 s lag; the long one has the host's 20 s.
	for id, bound := range map[string]time.Duration{short: 13 * time.Second, long: 20 * time.Second} {
		rec := fenceRecord(t, stateDir, id)
		assert.Nil(t, rec.ReportedAt, "not reported while cut off")
		assert.Contains(t, []string{"graceful", "killed"}, rec.Stopped)
		assert.Equal(t, bound, rec.Bound, id)
		assert.GreaterOrEqual(t, rec.FencedAt.Sub(rec.CutOffSince), bound, "fenced after its bound")
		// The bound runs from the server's last answer to the host's
		// probe, at most one probe (5 s) before the cut, also for the
		// program restarted 3 s after it.
		assert.False(t, rec.CutOffSince.After(cut), "cut off since the last answer before the cut, not since the restart")
		assert.WithinDuration(t, cut, rec.CutOffSince, 5*time.Second)
	}

	proxy.setCut(false)
	spec = h.waitStatus(t, long, workflows.StatusCleanedUp, 90*time.Second)
	assert.Equal(t, "fenced", spec.ExitReason)
	assert.Empty(t, spec.Restarts, "a fenced end is not restarted by default")
	require.NotNil(t, spec.Cleanup)
	assert.Contains(t, spec.Cleanup.Reason, "process stopped by its own host")
	assert.EqualValues(t, 100, spec.Cleanup.Refunded)

	require.Eventually(t, func() bool {
		return fenceRecord(t, stateDir, short).ReportedAt != nil && fenceRecord(t, stateDir, long).ReportedAt != nil
	}, 30*time.Second, 200*time.Millisecond, "both reported once the server answers")
	log, err := os.ReadFile(logFile)
	require.NoError(t, err)
	assert.Contains(t, string(log), "The server does not answer at start", "the restarted program fenced while it waited")
	for _, id := range []string{short, long} {
		assert.Contains(t, string(log), "Reported a worker this host stopped while cut off from the server worker_id="+id)
		// Nothing runs twice: no process of either worker anywhere.
		assert.Empty(t, processesOf(t, id), "%s has a process again", id)
		h.requireReleased(t, id)
	}
	assert.Equal(t, before.Available, h.budget(t).Available, "every token is back, none twice")
}

// fenceRecord reads the one fence record of worker id in a state folder.
func fenceRecord(t *testing.T, stateDir, id string) activities.FenceRecord {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(stateDir, id+".*.fenced.json"))
	require.NoError(t, err)
	require.Len(t, files, 1, "one fence record of %s in %s", id, stateDir)
	data, err := os.ReadFile(files[0])
	require.NoError(t, err)
	var rec activities.FenceRecord
	require.NoError(t, json.Unmarshal(data, &rec))
	return rec
}

// processesOf lists the live processes whose environment names worker id.
func processesOf(t *testing.T, id string) []int {
	t.Helper()
	all, err := procfs.PIDs()
	require.NoError(t, err)
	var pids []int
	for _, pid := range all {
		if procfs.HasEnv(pid, "WORKER_ID="+id) {
			pids = append(pids, pid)
		}
	}
	return pids
}
