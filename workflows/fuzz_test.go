package workflows

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzSpawnRequestValidate: whatever a master sends, validation answers
// without panicking, and what it accepts is safe to use in paths.
func FuzzSpawnRequestValidate(f *testing.F) {
	f.Add("worker-fix-1", "fix-worker", "task-1", "high", "development-master", "owner/repo", int64(5000), int64(0))
	f.Add("worker-x-../../etc", "fix-worker", "task-1", "low", "m", "", int64(1), int64(-1))
	f.Add("worker-a-1;rm -rf /", "", "job", "urgent", "", "a b", int64(-5), int64(1<<62))
	f.Add(strings.Repeat("w", 10000), "t", "task-"+strings.Repeat("x", 200), "medium", "m", "o/r", int64(200001), int64(0))
	f.Fuzz(func(t *testing.T, id, typ, task, prio, master, repo string, budget, zombie int64) {
		r := SpawnRequest{WorkerID: id, WorkerType: typ, TaskID: task, Priority: prio, Master: master, Repo: repo,
			Budget: budget, Limits: Limits{ZombieAfter: time.Duration(zombie)}}
		if r.Validate() != nil {
			return
		}
		if strings.ContainsAny(r.WorkerID, "/. \t$;`'\"\\") || len(r.WorkerID) > MaxIDLength {
			t.Fatalf("accepted an unsafe worker id %q", r.WorkerID)
		}
		if r.Budget < MinBudget || r.Budget > MaxBudget {
			t.Fatalf("accepted budget %d", r.Budget)
		}
	})
}

// FuzzHeartbeatPayload: a signal payload of any bytes decodes or fails,
// and validation never lets through what the lifecycle must refuse.
func FuzzHeartbeatPayload(f *testing.F) {
	f.Add([]byte(`{"tokens_used": 10, "health_score": 90, "status": "busy", "message": "ok"}`))
	f.Add([]byte(`{"tokens_used": -1}`))
	f.Add([]byte(`{"tokens_used": "many"}`))
	f.Add([]byte(`{"health_score": 1e309}`))
	f.Add([]byte(`{"status": "sleeping", "message": "` + strings.Repeat("x", 70000) + `"}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var hb Heartbeat
		if json.Unmarshal(payload, &hb) != nil {
			return
		}
		if hb.Validate() != nil {
			return
		}
		if hb.TokensUsed < 0 || len(hb.Message) > MaxMessageBytes ||
			(hb.HealthScore != nil && (*hb.HealthScore < 0 || *hb.HealthScore > 100)) ||
			(hb.Status != "" && hb.Status != HeartbeatBusy && hb.Status != HeartbeatIdle) {
			t.Fatalf("accepted %+v", hb)
		}
	})
}
