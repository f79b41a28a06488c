package fleet

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Heartbeater is an agent's heartbeat loop: it tells the worker's lifecycle
// every interval that the agent is alive, with what the agent set last
// (tokens used so far, busy or idle, a health score, a message), and at once
// when the status changes, since the lifecycle acts on busy and idle. An
// agent makes one with Client.Heartbeater, runs Run in a goroutine and calls
// the setters as it works.
//
// A lifecycle judges staleness by when it received the last heartbeat, so
// the interval must stay well under the worker's heartbeat warning (60 s by
// default); the old system's agents sent one every 30 s.
type Heartbeater struct {
	client   *Client
	workerID string
	every    time.Duration

	// OnError, when set, hears of each heartbeat that failed for a reason
	// that may pass (the server unreachable, a timeout); Run goes on and
	// sends the next one. Set it before Run.
	OnError func(error)

	mu      sync.Mutex
	hb      workflows.Heartbeat
	changed chan struct{} // a status change to send now; never blocks
}

// Heartbeater returns the heartbeat loop of a worker. every is the interval
// between heartbeats, from one second to half the default heartbeat warning
// (30 s), so that one late heartbeat raises no alert.
func (f *Client) Heartbeater(workerID string, every time.Duration) (*Heartbeater, error) {
	if err := CheckID(workerID); err != nil {
		return nil, err
	}
	// Half the default warning, so that one late heartbeat is no alert.
	if maxEvery := workflows.DefaultHeartbeatWarning / 2; every < time.Second || every > maxEvery {
		return nil, invalidField("interval", "heartbeat interval %s is not in 1s..%s", every, maxEvery)
	}
	health := workflows.MaxHealthScore
	return &Heartbeater{client: f, workerID: workerID, every: every,
		hb: workflows.Heartbeat{HealthScore: &health}, changed: make(chan struct{}, 1)}, nil
}

// set applies change to a copy of the heartbeat and keeps it only if it is
// valid, so that a bad value changes nothing.
func (h *Heartbeater) set(change func(*workflows.Heartbeat)) (statusChanged bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := clone(h.hb)
	change(&next)
	if err := next.Validate(); err != nil {
		return false, invalid("heartbeat: ", err)
	}
	statusChanged = next.Status != h.hb.Status
	h.hb = next
	return statusChanged, nil
}

// SetTokens sets the tokens the agent has used so far (a running total,
// not an increment).
func (h *Heartbeater) SetTokens(total int64) error {
	_, err := h.set(func(hb *workflows.Heartbeat) { hb.TokensUsed = total })
	return err
}

// AddTokens adds to the tokens used so far.
func (h *Heartbeater) AddTokens(n int64) error {
	_, err := h.set(func(hb *workflows.Heartbeat) { hb.TokensUsed += n })
	return err
}

// SetHealth sets the agent's own health score, 0..100.
func (h *Heartbeater) SetHealth(score int) error {
	_, err := h.set(func(hb *workflows.Heartbeat) { hb.HealthScore = &score })
	return err
}

// SetStatus sets busy, idle, blocked or awaiting_input (workflows.HeartbeatBusy, ...) and a
// message; a change of status is sent at once.
func (h *Heartbeater) SetStatus(status, message string) error {
	changed, err := h.set(func(hb *workflows.Heartbeat) { hb.Status, hb.Message = status, message })
	if changed {
		select {
		case h.changed <- struct{}{}:
		default: // one is already waiting to be sent
		}
	}
	return err
}

// Last is the heartbeat as it stands, what the next one will carry.
func (h *Heartbeater) Last() workflows.Heartbeat {
	h.mu.Lock()
	defer h.mu.Unlock()
	return clone(h.hb)
}

// clone copies a heartbeat, its health score included, so that a caller's
// copy never shares the loop's.
func clone(hb workflows.Heartbeat) workflows.Heartbeat {
	if hb.HealthScore != nil {
		score := *hb.HealthScore
		hb.HealthScore = &score
	}
	return hb
}

// Beat sends one heartbeat now.
func (h *Heartbeater) Beat(ctx context.Context) error {
	hb := h.Last()
	now := time.Now().UTC()
	hb.SentAt = &now
	return h.client.Heartbeat(ctx, h.workerID, hb)
}

// Run sends a heartbeat at once, then every interval and on each status
// change, until ctx is done (it returns nil) or the lifecycle can no longer
// take heartbeats: it returns the error, ErrEnded or ErrUnknownWorker (or
// ErrInvalid for a worker id that cannot be one), and the agent should stop
// working, since nobody accounts for it any more.
func (h *Heartbeater) Run(ctx context.Context) error {
	tick := time.NewTicker(h.every)
	defer tick.Stop()
	for {
		if err := h.Beat(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrEnded) || errors.Is(err, ErrUnknownWorker) || errors.Is(err, ErrInvalid) {
				return err
			}
			if h.OnError != nil {
				h.OnError(err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-h.changed:
		}
	}
}
