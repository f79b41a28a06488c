package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// Spend windows and budget alerts, of the pools and of the root (named
// PoolRoot here).
//
// A pool's window is one of the intervals [WindowFrom + k·Window, WindowFrom
// + (k+1)·Window). What its workers spent (the tokens_used a lifecycle
// reports when it gives its budget back) is added to the window it ends in.
// The ledger sleeps on one durable timer, until the earliest end of an open
// window; when it fires the spend of the windows that ended is set to 0,
// their alerts are re-armed, and the queue is admitted.
//
// An alert is raised once per crossing: when what a pool holds reaches
// AlertAt % of its quota, or what its window spent reaches AlertAt % of the
// window limit (for the root: of the total, and of its window limit). It is
// logged, shown in the ledger's details in the Web UI and in `budget show`,
// and counted (Seq), which the coordination mirror turns into one
// budget_alert event. It is re-armed when both fall back below the
// threshold, or at the window's reset.

// WindowState is a pool's current spend window.
type WindowState struct {
	Start time.Time `json:"start"`
	Spent int64     `json:"spent"`
}

// AlertState is a pool's alert: raised (Active) or armed.
type AlertState struct {
	Active  bool      `json:"active,omitempty"`
	Seq     int       `json:"seq,omitempty"`
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since,omitempty"`
}

// WindowView is a spend window as `budget show` prints it.
type WindowView struct {
	Limit int64     `json:"limit"`
	Spent int64     `json:"spent"`
	Ends  time.Time `json:"ends"`
}

// AlertView is a raised alert as `budget show` prints it; Seq counts the
// alerts of the pool so far.
type AlertView struct {
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
	Seq     int       `json:"seq"`
}

// windowSettings are the root's or a pool's settings, by name.
func (l *ledger) windowSettings(name string) PoolSettings {
	if name == PoolRoot {
		return l.st.Root
	}
	return l.settings(name)
}

// windowStart is the start of the window of s that now falls in: windows
// repeat every Window before WindowFrom as after it. WindowFrom is kept
// within MaxWindowFrom of the ledger's clock, so the difference does not
// overflow.
func windowStart(s PoolSettings, now time.Time) time.Time {
	d := now.Sub(s.WindowFrom)
	k := d / s.Window
	if d < 0 && d%s.Window != 0 {
		k--
	}
	return s.WindowFrom.Add(k * s.Window)
}

// MaxWindowFrom bounds how far window_from may lie from now.
const MaxWindowFrom = 10 * 366 * 24 * time.Hour

// spent is what the window of name that is open now has spent.
func (l *ledger) spent(ctx workflow.Context, name string) int64 {
	s := l.windowSettings(name)
	if s.Window == 0 {
		return 0
	}
	w := l.st.Windows[name]
	if !w.Start.Equal(windowStart(s, workflow.Now(ctx))) {
		return 0 // that window has ended; the timer resets it
	}
	return w.Spent
}

// settle adds what a worker of pool spent to its pool's and the root's
// open windows.
func (l *ledger) settle(ctx workflow.Context, pool string, spent int64) {
	if spent <= 0 {
		return
	}
	for _, name := range []string{pool, PoolRoot} {
		s := l.windowSettings(name)
		if s.Window == 0 || (name == pool && pool == "") {
			continue
		}
		if l.st.Windows == nil {
			l.st.Windows = map[string]WindowState{}
		}
		start := windowStart(s, workflow.Now(ctx))
		w := l.st.Windows[name]
		if !w.Start.Equal(start) {
			// A new window to reset: the main loop sets its timer.
			w = WindowState{Start: start}
			l.rearm = true
		}
		w.Spent += spent
		l.st.Windows[name] = w
	}
}

// windowFit refuses amount when the window of name (a pool or the root)
// would pass its limit with it: what it spent, what it holds, and amount.
func (l *ledger) windowFit(ctx workflow.Context, name string, held, amount int64) string {
	s := l.windowSettings(name)
	if s.WindowLimit == 0 {
		return ""
	}
	spent := l.spent(ctx, name)
	if spent+held+amount <= s.WindowLimit {
		return ""
	}
	ends := windowStart(s, workflow.Now(ctx)).Add(s.Window)
	what := "pool " + name
	if name == PoolRoot {
		what = "the root"
	}
	return fmt.Sprintf("%s: %s spent %d and holds %d of its window limit %d, required %d; the window resets at %s",
		activities.ErrBudgetRefused, what, spent, held, s.WindowLimit, amount, ends.UTC().Format(time.RFC3339))
}

// nextReset is how long until the earliest end of a window, and whether
// any window is set.
func (l *ledger) nextReset(ctx workflow.Context) (time.Duration, bool) {
	now := workflow.Now(ctx)
	var first time.Time
	consider := func(s PoolSettings) {
		if s.Window == 0 {
			return
		}
		if end := windowStart(s, now).Add(s.Window); first.IsZero() || end.Before(first) {
			first = end
		}
	}
	consider(l.st.Root)
	for _, name := range sortedKeys(l.st.Pools) {
		consider(l.st.Pools[name])
	}
	// Pools on the defaults have a window to reset once they spent.
	for _, name := range sortedKeys(l.st.Windows) {
		consider(l.windowSettings(name))
	}
	if first.IsZero() {
		return 0, false
	}
	return max(first.Sub(now), time.Millisecond), true
}

// windowsEnded reports whether a window with spend has ended.
func (l *ledger) windowsEnded(ctx workflow.Context) bool {
	now := workflow.Now(ctx)
	for name, w := range l.st.Windows {
		if s := l.windowSettings(name); s.Window == 0 || !w.Start.Equal(windowStart(s, now)) {
			return true
		}
	}
	return false
}

// resetWindows starts the windows that have ended afresh and admits what
// their spend held back; admit re-evaluates the alerts, which re-arms a
// spend alert (and keeps one about what is held, if it still holds).
func (l *ledger) resetWindows(ctx workflow.Context) {
	now := workflow.Now(ctx)
	for _, name := range sortedKeys(l.st.Windows) {
		if s := l.windowSettings(name); s.Window == 0 || !l.st.Windows[name].Start.Equal(windowStart(s, now)) {
			delete(l.st.Windows, name)
		}
	}
	l.admit(ctx)
}

// checkAlerts raises the alerts of the pools and the root that crossed
// their threshold, and re-arms those that fell back below it.
func (l *ledger) checkAlerts(ctx workflow.Context) {
	// Every pool that holds, waits, is set, spent in a window or has an
	// alert: a pool on the defaults whose last worker ended must still
	// see its alert re-armed.
	names := []string{PoolRoot}
	seen := map[string]bool{PoolRoot: true}
	add := func(name string) {
		if !seen[name] && name != "" {
			names = append(names, name)
			seen[name] = true
		}
	}
	for _, v := range l.poolViews() {
		add(v.Name)
	}
	for _, name := range sortedKeys(l.st.Windows) {
		add(name)
	}
	for _, name := range sortedKeys(l.st.Alerts) {
		add(name)
	}
	u := l.usage()
	changed := false
	for _, name := range names {
		msg := l.alertCrossing(ctx, u, name)
		a := l.st.Alerts[name]
		switch {
		case msg != "" && !a.Active:
			a = AlertState{Active: true, Seq: a.Seq + 1, Message: msg, Since: workflow.Now(ctx).UTC()}
			workflow.GetLogger(ctx).Warn("Budget alert", "pool", name, "alert", msg)
			// Raised by its own coroutine (raiseEvents): this decision
			// must not yield half-way.
			l.events = append(l.events, Event{Kind: EventBudgetAlert, Pool: name, Message: msg})
		case msg == "" && a.Active:
			a.Active = false // its message and time stay, for LastAlert
		default:
			continue
		}
		if l.st.Alerts == nil {
			l.st.Alerts = map[string]AlertState{}
		}
		l.st.Alerts[name] = a
		changed = true
	}
	if changed {
		l.showAlerts(ctx)
	}
}

// alertCrossing says why the pool (or the root) is at or above its alert
// threshold, or "".
func (l *ledger) alertCrossing(ctx workflow.Context, u usage, name string) string {
	s := l.windowSettings(name)
	at := s.AlertAt
	if at == 0 {
		at = DefaultAlertAt
	}
	held, capacity := u.used, l.st.Total
	what := "the root"
	if name != PoolRoot {
		held = u.pools[name].held
		capacity = s.Quota
		what = "pool " + name
	}
	var why []string
	if capacity > 0 && held*100 >= capacity*int64(at) {
		why = append(why, fmt.Sprintf("holds %d of %d (%d%%)", held, capacity, held*100/capacity))
	}
	if s.WindowLimit > 0 {
		if spent := l.spent(ctx, name); spent*100 >= s.WindowLimit*int64(at) {
			why = append(why, fmt.Sprintf("spent %d of its window limit %d (%d%%)", spent, s.WindowLimit, spent*100/s.WindowLimit))
		}
	}
	if len(why) == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s, at or above its alert threshold of %d%%", what, strings.Join(why, " and "), at)
}

// showAlerts puts the raised alerts in the ledger's details, which the Web
// UI shows on its page; they are no command, so replays are unaffected.
func (l *ledger) showAlerts(ctx workflow.Context) {
	var lines []string
	for _, name := range sortedKeys(l.st.Alerts) {
		if a := l.st.Alerts[name]; a.Active {
			lines = append(lines, "**budget alert**: "+a.Message)
		}
	}
	workflow.SetCurrentDetails(ctx, strings.Join(lines, "\n\n"))
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// windowView is the window of name as operators see it, or nil.
func (l *ledger) windowView(ctx workflow.Context, name string) *WindowView {
	s := l.windowSettings(name)
	if s.Window == 0 {
		return nil
	}
	return &WindowView{Limit: s.WindowLimit, Spent: l.spent(ctx, name), Ends: windowStart(s, workflow.Now(ctx)).Add(s.Window).UTC()}
}

// lastAlerts are the latest alert of the root and of each pool that has
// had one, raised now or re-armed since.
func (l *ledger) lastAlerts() map[string]AlertView {
	var out map[string]AlertView
	for name, a := range l.st.Alerts {
		if a.Seq == 0 {
			continue
		}
		if out == nil {
			out = map[string]AlertView{}
		}
		out[name] = AlertView{Message: a.Message, Since: a.Since, Seq: a.Seq}
	}
	return out
}

// alertView is the raised alert of name, or nil.
func (l *ledger) alertView(name string) *AlertView {
	if a := l.st.Alerts[name]; a.Active {
		return &AlertView{Message: a.Message, Since: a.Since, Seq: a.Seq}
	}
	return nil
}
