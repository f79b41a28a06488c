package workflows

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// Pools divide the ledger's total (the root) between masters and teams,
// after Kueue's ClusterQueues in a cohort:
//
//	root (Total)
//	├── pool "team-a"  quota 100000, borrow 50000, lend 20000, max 10 workers
//	├── pool "master-b" (no settings of its own: the defaults)
//	└── ""             lifecycles that name no pool (started before pools)
//
// A lifecycle reserves in the pool its request names, or its master's pool.
// A pool with a quota may hold up to it, and up to Borrow more out of what
// the others leave unused. Of its own unused quota the others may take at
// most Lend (all of it when Lend is unset): the rest is kept for it. A pool
// without a quota takes what the root has, less what the quotas keep.
// A request is admitted when its pool and the root both have room:
//
//	on hold?                  → waits (or is refused)
//	workers ≥ MaxWorkers?     → waits
//	held + amount > Quota+Borrow  → waits
//	amount > Total − used − kept for the others → waits
//
// The queue is ordered by priority, then arrival. Within a pool it is
// strict (a head that does not fit holds back what is behind it) unless
// the pool is BestEffort. Across pools, a request that stays within the
// room its pool keeps (quota less lending limit, which no other pool may
// take) is never held back by another pool's; any other request shares
// the root's room and waits behind every strict request ahead of it that
// waits for that room, so a large request is not starved by small ones.
// A pool on hold keeps nothing. The pools may not keep more than the
// total, and the total may not drop below what they keep or below a quota.

// PoolRoot is the name of the whole budget, which is not a pool: its size
// is the ledger's total, and it has no quota, borrowing or lending.
const PoolRoot = "root"

// PoolSettings is what `starter budget pool set` configures. Zero values
// are the defaults: no quota, no borrowing, lends all its unused quota, no
// cap on workers, admitting, strict order.
type PoolSettings struct {
	// Quota is the tokens the pool may hold (0: no quota, the root bounds it).
	Quota int64 `json:"quota,omitempty"`
	// Borrow is how far beyond Quota the pool may go with what other
	// pools leave unused.
	Borrow int64 `json:"borrow,omitempty"`
	// Lend is how much of its unused quota others may take; nil is all.
	Lend *int64 `json:"lend,omitempty"`
	// MaxWorkers caps the pool's live workers (0: no cap).
	MaxWorkers int `json:"max_workers,omitempty"`
	// Hold stops new admissions; queued requests wait.
	Hold bool `json:"hold,omitempty"`
	// BestEffort lets a smaller request pass a larger one of the pool that
	// does not fit (Kueue's BestEffortFIFO); the default is strict order.
	BestEffort bool `json:"best_effort,omitempty"`
	// Window and WindowLimit limit what the pool's workers spend (the
	// tokens they report, settled when each ends) per window: windows of
	// length Window from WindowFrom (by default, when it was set). While
	// the window's spend plus what the pool holds would pass the limit,
	// requests wait for the window's end, a durable timer of the ledger.
	Window      time.Duration `json:"window,omitempty"`
	WindowLimit int64         `json:"window_limit,omitempty"`
	WindowFrom  time.Time     `json:"window_from,omitempty"`
	// AlertAt is the alert threshold in percent of the quota held or the
	// window limit spent (0: DefaultAlertAt).
	AlertAt int `json:"alert_at,omitempty"`
	// QueueTimeout is how long a queued spawn of the pool that sets no
	// queue timeout of its own waits before it fails holding nothing (0:
	// DefaultQueueTimeout).
	QueueTimeout time.Duration `json:"queue_timeout,omitempty"`
}

// DefaultAlertAt is the alert threshold of a pool or the root that sets
// none, in percent.
const DefaultAlertAt = 75

// Bounds of a spend window.
const (
	MinWindow = time.Minute
	MaxWindow = 366 * 24 * time.Hour
)

// PoolSetRequest configures a pool, or with Defaults the settings of
// every pool that has none of its own (created on first use). Fields, when
// given, lists the settings to take from Settings (by their JSON names);
// the others keep the pool's current values, its own or the defaults. The
// ledger merges them, so two operators changing different settings at
// once do not undo each other.
type PoolSetRequest struct {
	Name     string       `json:"name,omitempty"`
	Defaults bool         `json:"defaults,omitempty"`
	Settings PoolSettings `json:"settings"`
	Fields   []string     `json:"fields,omitempty"`
}

// PoolFields are the names PoolSetRequest.Fields may list.
var PoolFields = []string{"quota", "borrow", "lend", "max_workers", "hold", "best_effort", "window", "window_limit", "window_from", "alert_at", "queue_timeout"}

// Merge returns base with the listed fields taken from s (all of s when
// fields is empty).
func (s PoolSettings) Merge(base PoolSettings, fields []string) (PoolSettings, error) {
	if len(fields) == 0 {
		return s, nil
	}
	for _, f := range fields {
		switch f {
		case "quota":
			base.Quota = s.Quota
		case "borrow":
			base.Borrow = s.Borrow
		case "lend":
			base.Lend = s.Lend
		case "max_workers":
			base.MaxWorkers = s.MaxWorkers
		case "hold":
			base.Hold = s.Hold
		case "best_effort":
			base.BestEffort = s.BestEffort
		case "window":
			base.Window = s.Window
		case "window_limit":
			base.WindowLimit = s.WindowLimit
		case "window_from":
			base.WindowFrom = s.WindowFrom
		case "alert_at":
			base.AlertAt = s.AlertAt
		case "queue_timeout":
			base.QueueTimeout = s.QueueTimeout
		default:
			return base, fmt.Errorf("unknown pool setting %s: one of %s", Quote(f), strings.Join(PoolFields, ", "))
		}
	}
	return base, nil
}

// PoolDeleteRequest removes a pool's settings.
type PoolDeleteRequest struct {
	Name string `json:"name"`
}

// PoolView is one pool as operators see it in `budget show`.
type PoolView struct {
	Name     string       `json:"name"`
	Settings PoolSettings `json:"settings"`
	// Configured is false for a pool that runs on the defaults.
	Configured bool  `json:"configured"`
	Held       int64 `json:"held"`
	// Borrowed is what it holds beyond its quota.
	Borrowed int64 `json:"borrowed,omitempty"`
	Workers  int   `json:"workers"`
	Queued   int64 `json:"queued,omitempty"`
	Waiting  int   `json:"waiting,omitempty"`
	// Window is its open spend window, Alert its raised alert.
	Window *WindowView `json:"window,omitempty"`
	Alert  *AlertView  `json:"alert,omitempty"`
}

// ValidatePoolName refuses a name that cannot be a pool.
func ValidatePoolName(name string) error {
	if name == PoolRoot {
		return fmt.Errorf("%q is the whole budget, not a pool: it has no quota, borrowing or lending; size it with `budget set --total`", PoolRoot)
	}
	if !MasterPattern.MatchString(name) || len(name) > MaxIDLength {
		return fmt.Errorf("pool name %s must match %s (at most %d characters)", Quote(name), MasterPattern, MaxIDLength)
	}
	return nil
}

// Validate checks settings on their own, before any call.
func (s PoolSettings) Validate() error {
	switch {
	case s.Quota < 0 || s.Quota > MaxBudgetTotal:
		return fmt.Errorf("quota %d is not in 0..%d", s.Quota, MaxBudgetTotal)
	case s.Borrow < 0 || s.Borrow > MaxBudgetTotal:
		return fmt.Errorf("borrowing limit %d is not in 0..%d", s.Borrow, MaxBudgetTotal)
	case s.Borrow > 0 && s.Quota == 0:
		return fmt.Errorf("a borrowing limit needs a quota: a pool without one takes what the root has")
	case s.Lend != nil && s.Quota == 0:
		return fmt.Errorf("a lending limit needs a quota: a pool without one has nothing to lend")
	case s.Lend != nil && (*s.Lend < 0 || *s.Lend > s.Quota):
		return fmt.Errorf("lending limit %d is not in 0..%d (the quota)", *s.Lend, s.Quota)
	case s.MaxWorkers < 0:
		return fmt.Errorf("max workers %d is negative", s.MaxWorkers)
	case s.Window != 0 && (s.Window < MinWindow || s.Window > MaxWindow):
		return fmt.Errorf("window %s is not in %s..%s", s.Window, MinWindow, MaxWindow)
	case s.WindowLimit < 0 || s.WindowLimit > MaxBudgetTotal:
		return fmt.Errorf("window limit %d is not in 0..%d", s.WindowLimit, MaxBudgetTotal)
	case s.WindowLimit > 0 && s.Window == 0:
		return fmt.Errorf("a window limit needs a window (e.g. 24h)")
	case s.AlertAt < 0 || s.AlertAt > 100:
		return fmt.Errorf("alert threshold %d%% is not in 1..100", s.AlertAt)
	case s.QueueTimeout < 0 || s.QueueTimeout > maxLimitDuration:
		return fmt.Errorf("queue timeout %s is not in 0..%s", s.QueueTimeout, maxLimitDuration)
	}
	return nil
}

// ValidateRoot refuses root settings other than a spend window, an alert
// threshold and a queue timeout: the root is the whole budget.
func (s PoolSettings) ValidateRoot() error {
	if s.Quota != 0 || s.Borrow != 0 || s.Lend != nil || s.MaxWorkers != 0 || s.Hold || s.BestEffort {
		return fmt.Errorf("%q is the whole budget, not a pool: it has no quota, borrowing, lending, worker cap, hold or order; size it with `budget set --total` (it takes --window, --window-limit, --window-from, --alert-at and --queue-timeout)", PoolRoot)
	}
	return nil
}

// poolOf is the pool a lifecycle reserves in: the one its request names,
// or its master's. A master named like the root reserves in the root
// alone, as lifecycles started before pools do.
func poolOf(r SpawnRequest) string {
	if p := orDefault(r.Pool, r.Master); p != PoolRoot {
		return p
	}
	return ""
}

// settings are the pool's own, or the defaults; the unnamed pool of
// lifecycles started before pools has none.
func (l *ledger) settings(pool string) PoolSettings {
	if pool == "" {
		return PoolSettings{}
	}
	if s, ok := l.st.Pools[pool]; ok {
		return s
	}
	return l.st.PoolDefaults
}

// queueTimeout is how long a queued request of the pool waits when its
// spawn set no queue timeout: the pool's own or the defaults' setting, the
// root's for the unnamed pool, else DefaultQueueTimeout.
func (l *ledger) queueTimeout(pool string) time.Duration {
	s := l.settings(pool)
	if pool == "" {
		s = l.st.Root
	}
	if s.QueueTimeout > 0 {
		return s.QueueTimeout
	}
	return DefaultQueueTimeout
}

// poolUse is what a pool holds, and how many workers.
func (l *ledger) poolUse(pool string) (held int64, workers int) {
	for _, a := range l.st.Allocations {
		if a.Pool == pool {
			held += a.Amount
			workers++
		}
	}
	return held, workers
}

// usage is what the allocations hold, in all and per pool, counted once
// per admission decision: a decision looks at every queued request, and
// counting the allocations for each made admission O(queue × allocations).
type usage struct {
	used  int64
	pools map[string]poolHeld
}

type poolHeld struct {
	held    int64
	workers int
}

func (l *ledger) usage() usage {
	u := usage{pools: map[string]poolHeld{}}
	for _, a := range l.st.Allocations {
		p := u.pools[a.Pool]
		p.held += a.Amount
		p.workers++
		u.pools[a.Pool] = p
		u.used += a.Amount
	}
	return u
}

// keeps is the part of a configured pool's quota it does not lend: room
// no other pool may take. Pools on the defaults keep nothing.
func keeps(s PoolSettings) int64 {
	if s.Quota == 0 || s.Lend == nil {
		return 0
	}
	return s.Quota - *s.Lend
}

// kept is what the configured pools other than pool keep of their unused
// quota for themselves; a pool on hold admits nothing, and keeps nothing
// meanwhile.
func (l *ledger) kept(u usage, pool string) int64 {
	var kept int64
	for name, s := range l.st.Pools {
		if name == pool || s.Hold {
			continue
		}
		if k := keeps(s) - u.pools[name].held; k > 0 {
			kept += k
		}
	}
	return kept
}

// fit says whether amount fits in pool now: fits, or why not, and whether
// it is the pool or the root that lacks room.
type fitVerdict int

const (
	fitsNow fitVerdict = iota
	poolFull
	rootFull
)

func (l *ledger) fit(u usage, pool string, amount int64) (fitVerdict, string) {
	s := l.settings(pool)
	held, workers := u.pools[pool].held, u.pools[pool].workers
	switch {
	case s.Hold:
		return poolFull, fmt.Sprintf("%s: pool %s is on hold", activities.ErrBudgetRefused, pool)
	case s.MaxWorkers > 0 && workers >= s.MaxWorkers:
		return poolFull, fmt.Sprintf("%s: pool %s runs %d workers, its limit", activities.ErrBudgetRefused, pool, workers)
	case s.Quota > 0 && held+amount > s.Quota+s.Borrow:
		return poolFull, fmt.Sprintf("%s: pool %s holds %d of its quota %d (borrowing limit %d), required %d",
			activities.ErrBudgetRefused, pool, held, s.Quota, s.Borrow, amount)
	}
	if pool != "" {
		if why := l.windowFit(l.ctx, pool, held, amount); why != "" {
			return poolFull, why
		}
	}
	if why := l.windowFit(l.ctx, PoolRoot, u.used, amount); why != "" {
		return rootFull, why
	}
	free := l.st.Total - u.used
	kept := l.kept(u, pool)
	if amount > free-kept {
		if kept == 0 {
			return rootFull, fmt.Sprintf("%s: available %d < required %d", activities.ErrBudgetRefused, free, amount)
		}
		return rootFull, fmt.Sprintf("%s: available %d < required %d (of %d free, other pools keep %d for their quotas)",
			activities.ErrBudgetRefused, max(free-kept, 0), amount, free, kept)
	}
	return fitsNow, ""
}

// impossible says why amount can never be admitted in pool, whatever is
// given back: above the total, its pool's quota and borrowing limit, or a
// window limit. Such a request is refused, not queued: it would wait for
// ever, holding back every request behind it.
func (l *ledger) impossible(pool string, amount int64) string {
	s := l.settings(pool)
	switch {
	case amount > l.st.Total:
		return fmt.Sprintf("%s: required %d is above the total budget %d", activities.ErrBudgetRefused, amount, l.st.Total)
	case pool != "" && s.Quota > 0 && amount > s.Quota+s.Borrow:
		return fmt.Sprintf("%s: required %d is above pool %s's quota %d and borrowing limit %d", activities.ErrBudgetRefused, amount, pool, s.Quota, s.Borrow)
	case pool != "" && s.WindowLimit > 0 && amount > s.WindowLimit:
		return fmt.Sprintf("%s: required %d is above pool %s's window limit %d", activities.ErrBudgetRefused, amount, pool, s.WindowLimit)
	case l.st.Root.WindowLimit > 0 && amount > l.st.Root.WindowLimit:
		return fmt.Sprintf("%s: required %d is above the root's window limit %d", activities.ErrBudgetRefused, amount, l.st.Root.WindowLimit)
	}
	return ""
}

// inKept reports whether amount stays inside the room the pool keeps for
// itself (quota less lending limit): room no other pool may take, so no
// other pool's request waits for it.
func (l *ledger) inKept(u usage, pool string, amount int64) bool {
	s, ok := l.st.Pools[pool]
	if !ok {
		return false
	}
	return !s.Hold && u.pools[pool].held+amount <= keeps(s)
}

// next is the index of the first queued request that may be admitted now,
// or -1; why says why the request at index target (if any) may not.
//
// A strict pool's first waiting request holds back the rest of that pool.
// A request that waits for the root's room (it does not fit in the room
// its pool keeps) holds back every later request that needs the root's
// room too; one inside its pool's kept room passes.
func (l *ledger) next(target int) (admit int, why string) {
	u := l.usage()
	rootWaiting := 0 // strict requests seen that wait for the root's room
	seen := map[string]int{}
	blocked := map[string]fitVerdict{} // a strict pool's head's verdict
	for i, q := range l.st.Queue {
		ahead := seen[q.Pool]
		seen[q.Pool]++
		own, reason := l.fit(u, q.Pool, q.Amount)
		v := own
		if head, ok := blocked[q.Pool]; ok {
			v = head
			if own == fitsNow {
				reason = l.behind(u, ahead, q.Priority)
			}
		} else if own == fitsNow && rootWaiting > 0 && !l.inKept(u, q.Pool, q.Amount) {
			v, reason = rootFull, l.behind(u, rootWaiting, q.Priority)
		}
		if v == fitsNow {
			return i, ""
		}
		if i == target {
			why = reason
		}
		if l.settings(q.Pool).BestEffort {
			continue
		}
		if _, ok := blocked[q.Pool]; !ok {
			blocked[q.Pool] = v
		}
		if v == rootFull {
			rootWaiting++
		}
	}
	return -1, why
}

func (l *ledger) behind(u usage, n int, priority string) string {
	return fmt.Sprintf("%s: available %d, but %d queued requests of priority %s or higher come first",
		activities.ErrBudgetRefused, l.st.Total-u.used, n, priority)
}

// position is the request's place in the queue as it waits, from 1: one
// more than the requests ahead of it that it waits behind, those of its
// pool and, unless it fits in its pool's kept room, those of other pools
// that wait for the root's room. Without pools it is its place in the
// one queue.
func (l *ledger) position(i int) int {
	u := l.usage()
	me := l.st.Queue[i]
	own := l.inKept(u, me.Pool, me.Amount)
	p := 1
	for _, q := range l.st.Queue[:i] {
		if q.Pool == me.Pool || (!own && !l.inKept(u, q.Pool, q.Amount) && !l.settings(q.Pool).BestEffort) {
			p++
		}
	}
	return p
}

// merged is what req makes of the pool's settings.
func (l *ledger) merged(req PoolSetRequest) (PoolSettings, error) {
	base := l.st.PoolDefaults
	if req.Name == PoolRoot && !req.Defaults {
		base = l.st.Root
	} else if s, ok := l.st.Pools[req.Name]; ok && !req.Defaults {
		base = s
	}
	return req.Settings.Merge(base, req.Fields)
}

func (l *ledger) validatePoolSet(req PoolSetRequest) error {
	if !req.Defaults && req.Name != PoolRoot {
		if err := ValidatePoolName(req.Name); err != nil {
			return refused(err.Error())
		}
	} else if req.Defaults && req.Name != "" {
		return refused("pool defaults take no name")
	}
	s, err := l.merged(req)
	if err != nil {
		return refused(err.Error())
	}
	if req.Name == PoolRoot {
		if err := s.ValidateRoot(); err != nil {
			return refused(err.Error())
		}
	}
	if err := s.Validate(); err != nil {
		return refused(err.Error())
	}
	if !s.WindowFrom.IsZero() {
		if now := workflow.Now(l.ctx); s.WindowFrom.Before(now.Add(-MaxWindowFrom)) || s.WindowFrom.After(now.Add(MaxWindowFrom)) {
			return refused(fmt.Sprintf("window start %s is more than 10 years from now", s.WindowFrom.Format(time.RFC3339)))
		}
	}
	// A limit is checked against what is held when it is set, not when
	// another setting changes (a pool over its limit must still be put on
	// hold and drained).
	if s.WindowLimit > 0 && !req.Defaults && (len(req.Fields) == 0 || slices.Contains(req.Fields, "window_limit")) {
		held := l.used()
		if req.Name != PoolRoot {
			held, _ = l.poolUse(req.Name)
		}
		if s.WindowLimit < held {
			return refused(fmt.Sprintf("window limit %d is below the %d tokens %s holds now", s.WindowLimit, held, req.Name))
		}
	}
	if s.Quota > l.st.Total {
		return refused(fmt.Sprintf("quota %d is above the total budget %d", s.Quota, l.st.Total))
	}
	if !req.Defaults && req.Name != PoolRoot {
		kept := keeps(s)
		for name, other := range l.st.Pools {
			if name != req.Name {
				kept += keeps(other)
			}
		}
		if kept > l.st.Total {
			return refused(fmt.Sprintf("the pools would keep %d tokens for their quotas (quota less lending limit), above the total budget %d", kept, l.st.Total))
		}
	}
	return nil
}

// poolSet configures a pool. A quota lowered below what the pool holds is
// accepted: nothing is taken back, and the pool admits nothing until it
// fits again. Whatever it opens admits at once.
func (l *ledger) poolSet(ctx workflow.Context, req PoolSetRequest) (BudgetView, error) {
	if err := l.validatePoolSet(req); err != nil {
		return l.view(), err
	}
	s, _ := l.merged(req)
	name := req.Name
	if req.Defaults {
		name = ""
	}
	old := l.windowSettings(name)
	if req.Defaults {
		old = l.st.PoolDefaults
	}
	if s.Window > 0 && s.WindowFrom.IsZero() {
		// Windows count from when the first window was set, unless told.
		s.WindowFrom = old.WindowFrom
		if old.Window == 0 || s.WindowFrom.IsZero() {
			s.WindowFrom = workflow.Now(ctx).UTC()
		}
	}
	if w, ok := l.st.Windows[name]; ok && s.Window > 0 && !req.Defaults {
		// What was spent since the new window began still counts.
		if start := windowStart(s, workflow.Now(ctx)); !w.Start.Before(start) {
			l.st.Windows[name] = WindowState{Start: start, Spent: w.Spent}
		}
	}
	l.rearm = true
	switch {
	case req.Defaults:
		l.st.PoolDefaults = s
	case req.Name == PoolRoot:
		l.st.Root = s
	default:
		if l.st.Pools == nil {
			l.st.Pools = map[string]PoolSettings{}
		}
		l.st.Pools[req.Name] = s
	}
	l.st.UpdatesThisRun++
	l.admit(ctx)
	return l.view(), nil
}

// checkTotal refuses a total that the pools' settings do not fit in.
func (l *ledger) checkTotal(total int64) error {
	var kept int64
	names := make([]string, 0, len(l.st.Pools))
	for name, s := range l.st.Pools {
		kept += keeps(s)
		if s.Quota > total {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) > 0 {
		return fmt.Errorf("total %d is below the quota of pool %s", total, strings.Join(names, ", "))
	}
	if kept > total {
		return fmt.Errorf("total %d is below the %d tokens the pools keep for their quotas (quota less lending limit)", total, kept)
	}
	return nil
}

func (l *ledger) validatePoolDelete(req PoolDeleteRequest) error {
	if err := ValidatePoolName(req.Name); err != nil {
		return refused(err.Error())
	}
	if _, ok := l.st.Pools[req.Name]; !ok {
		return refused(fmt.Sprintf("unknown pool %s: it has no settings of its own", Quote(req.Name)))
	}
	held, workers := l.poolUse(req.Name)
	waiting := 0
	for _, q := range l.st.Queue {
		if q.Pool == req.Name {
			waiting++
		}
	}
	if workers > 0 || waiting > 0 {
		return refused(fmt.Sprintf("pool %s holds %d tokens for %d workers and has %d waiting: shut them down first (`budget pool set %s --hold --drain`)",
			req.Name, held, workers, waiting, req.Name))
	}
	return nil
}

func (l *ledger) poolDelete(ctx workflow.Context, req PoolDeleteRequest) (BudgetView, error) {
	if err := l.validatePoolDelete(req); err != nil {
		return l.view(), err
	}
	delete(l.st.Pools, req.Name)
	delete(l.st.Windows, req.Name)
	if a, ok := l.st.Alerts[req.Name]; ok && a.Active {
		// Its number is kept, so that a pool of the name made again
		// raises new alerts, not old ones.
		a.Active = false // its message stays, for LastAlerts
		l.st.Alerts[req.Name] = a
		l.showAlerts(ctx)
	}
	l.rearm = true
	l.st.UpdatesThisRun++
	l.admit(ctx)
	return l.view(), nil
}

// poolViews lists every pool that is configured, holds or waits, by name.
// What lifecycles started before pools hold is the root's alone, and is
// not listed as a pool.
func (l *ledger) poolViews() []PoolView {
	byName := map[string]*PoolView{}
	get := func(name string) *PoolView {
		if p, ok := byName[name]; ok {
			return p
		}
		s, configured := l.st.Pools[name]
		if !configured {
			s = l.settings(name)
		}
		p := &PoolView{Name: name, Settings: s, Configured: configured}
		byName[name] = p
		return p
	}
	for name := range l.st.Pools {
		get(name)
	}
	for _, a := range l.st.Allocations {
		if a.Pool == "" {
			continue
		}
		p := get(a.Pool)
		p.Held += a.Amount
		p.Workers++
	}
	for _, q := range l.st.Queue {
		if q.Pool == "" {
			continue
		}
		p := get(q.Pool)
		p.Queued += q.Amount
		p.Waiting++
	}
	out := make([]PoolView, 0, len(byName))
	for _, p := range byName {
		if q := p.Settings.Quota; q > 0 && p.Held > q {
			p.Borrowed = p.Held - q
		}
		p.Window, p.Alert = l.windowView(l.ctx, p.Name), l.alertView(p.Name)
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
