// Package notify delivers the fleet's events (workflows.FleetEvents) to
// webhooks: a JSON POST per event that needs a person, or a Slack
// incoming-webhook message. It follows the event log from the worker
// program that was given --notify-webhook, apart from every lifecycle: a
// slow or failing endpoint delays notifications, never a decision.
package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/atomicfile"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Formats of a webhook's body.
const (
	FormatJSON  = "json"  // the event, with a one-line text
	FormatSlack = "slack" // {"text": ...}, for Slack-compatible incoming webhooks
)

// Webhook is one endpoint.
type Webhook struct {
	URL    string
	Format string
}

// ParseWebhook reads URL or FORMAT=URL (slack=https://hooks.slack.com/...).
func ParseWebhook(s string) (Webhook, error) {
	w := Webhook{URL: s, Format: FormatJSON}
	if format, rest, ok := strings.Cut(s, "="); ok && !strings.Contains(format, ":") && !strings.Contains(format, "/") {
		w.Format, w.URL = format, rest
	}
	// The errors name the URL without its path, which may hold a secret.
	if w.Format != FormatJSON && w.Format != FormatSlack {
		return w, fmt.Errorf("--notify-webhook %s: format %q must be %s or %s (FORMAT=URL)", redact(w.URL), w.Format, FormatJSON, FormatSlack)
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return w, fmt.Errorf("--notify-webhook %s: not an http(s) URL", redact(w.URL))
	}
	return w, nil
}

// Source is the event log as the notifier reads it (fleet.Client.Events
// without a filter).
type Source func(ctx context.Context, after int64) ([]workflows.Event, int64, error)

// Notifier follows the event log and delivers each event once to each
// webhook, retrying with back-off. Each webhook follows the log on its own,
// so that a failing endpoint delays only its own notifications; what each
// was delivered up to is kept in a cursor file in Dir, so that a restart
// neither repeats nor skips events (those the log keeps meanwhile).
type Notifier struct {
	Source Source
	Hooks  []Webhook
	Dir    string
	// Every is how often the log is read; Tries and Backoff bound one
	// delivery (the back-off doubles after each failed try).
	Every   time.Duration
	Tries   int
	Backoff time.Duration
	HTTP    *http.Client
	Log     *slog.Logger
	// Result, when set, counts each delivery: "delivered" or "failed".
	Result func(result string)
}

// Run delivers until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	errs := make(chan error, len(n.Hooks))
	for _, h := range n.Hooks {
		go func() { errs <- n.follow(ctx, h) }()
	}
	var first error
	for range n.Hooks {
		if err := <-errs; err != nil {
			// One webhook stopped (its cursor cannot be kept): said at
			// once, while the others go on.
			n.Log.Error("Notifications to a webhook stopped", "error", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// CursorFile is where the delivery of the events to a webhook is kept:
// named by a digest of its URL, which must not be written down.
func (n *Notifier) CursorFile(h Webhook) string {
	sum := sha256.Sum256([]byte(h.Format + "=" + h.URL))
	return filepath.Join(n.Dir, "notify-"+hex.EncodeToString(sum[:6])+".cursor")
}

// follow delivers the log to one webhook.
func (n *Notifier) follow(ctx context.Context, h Webhook) error {
	file := n.CursorFile(h)
	cursor, ok, err := readCursor(file)
	if err != nil {
		return err
	}
	for !ok {
		// First start: the events of the past are not news. Until the log
		// can be read, nothing is known of where it stands.
		if _, cursor, err = n.source(ctx, 0); err == nil {
			if err := writeCursor(file, cursor); err != nil {
				return err
			}
			break
		}
		n.Log.Warn("Reading the fleet's events failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(n.Every):
		}
	}
	for {
		evs, next, err := n.source(ctx, cursor)
		switch {
		case errors.Is(err, workflows.ErrEventLogReset):
			n.Log.Warn("The fleet's event log started again: delivering it from its start", "webhook", redact(h.URL))
			cursor, next = 0, 0
		case err != nil && ctx.Err() == nil:
			n.Log.Warn("Reading the fleet's events failed; retrying", "error", err)
		}
		if len(evs) > 0 && evs[0].Seq > cursor+1 {
			n.Log.Warn("Events were dropped from the log before this webhook got them", "webhook", redact(h.URL), "missed", evs[0].Seq-cursor-1)
			if n.Result != nil {
				n.Result("missed")
			}
		}
		for _, ev := range evs {
			err := n.deliver(ctx, h, ev)
			if ctx.Err() != nil {
				return nil
			}
			result := "delivered"
			if err != nil {
				result = "failed"
				n.Log.Error("A notification was given up", "event", ev.ID, "kind", ev.Kind, "webhook", redact(h.URL), "error", err)
			}
			if n.Result != nil {
				n.Result(result)
			}
			if err := writeCursor(file, ev.Seq); err != nil {
				return err
			}
		}
		if next > cursor {
			cursor = next
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(n.Every):
		}
	}
}

func (n *Notifier) source(ctx context.Context, after int64) ([]workflows.Event, int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return n.Source(rctx, after)
}

// deliver posts ev, retrying with back-off, until a 2xx answer, a 4xx
// other than 408 and 429 (the endpoint refuses it: trying again would not
// help), its tries or ctx run out.
func (n *Notifier) deliver(ctx context.Context, h Webhook, ev workflows.Event) error {
	body, err := Body(h.Format, ev)
	if err != nil {
		return err
	}
	wait := n.Backoff
	var last error
	for try := 1; try <= n.Tries; try++ {
		var retry bool
		if retry, last = n.post(ctx, h.URL, ev.ID, body); last == nil {
			return nil
		}
		if !retry || try == n.Tries {
			break
		}
		n.Log.Warn("A notification failed; retrying", "event", ev.ID, "webhook", redact(h.URL), "try", try, "error", last)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
	return last
}

func (n *Notifier) post(ctx context.Context, target, id string, body []byte) (retry bool, err error) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	// The same key on every try of one event: the receiver drops repeats.
	req.Header.Set("Idempotency-Key", id)
	req.Header.Set("User-Agent", "worker-lifecycle-notify")
	resp, err := n.HTTP.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return false, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return true, fmt.Errorf("answered %s", resp.Status)
	default:
		return false, fmt.Errorf("answered %s", resp.Status)
	}
}

// Payload is the JSON body of a notification (format json): the event,
// and Text, a line for a person.
type Payload struct {
	workflows.Event
	Text string `json:"text"`
}

// Body is the body of a notification in a format.
func Body(format string, ev workflows.Event) ([]byte, error) {
	text := Text(ev)
	if format == FormatSlack {
		// Slack's mrkdwn: an agent's message must not ping a channel or
		// disguise a link.
		return json.Marshal(map[string]string{"text": slackEscaper.Replace(text)})
	}
	return json.Marshal(Payload{Event: ev, Text: text})
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Text is one line about an event, for a person.
func Text(ev workflows.Event) string {
	var who []string
	if ev.WorkerID != "" {
		who = append(who, ev.WorkerID)
	}
	if ev.WorkerType != "" {
		who = append(who, ev.WorkerType)
	}
	if ev.Host != "" {
		who = append(who, "on "+ev.Host)
	}
	if ev.Pool != "" {
		who = append(who, "pool "+ev.Pool)
	}
	line := "[" + string(ev.Kind) + "]"
	if len(who) > 0 {
		line += " " + strings.Join(who, ", ") + ":"
	}
	return line + " " + ev.Message
}

// redact keeps a webhook's secret path out of the logs.
func redact(target string) string {
	if u, err := url.Parse(target); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Scheme + "://" + u.Host + "/…"
	}
	if head, _, cut := strings.Cut(target, "/"); cut {
		return head + "/…"
	}
	return target
}

func readCursor(file string) (int64, bool, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("notifications: %w", err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("notifications: %s holds no event number: %w", file, err)
	}
	return v, true, nil
}

func writeCursor(file string, v int64) error {
	if err := atomicfile.Write(file, []byte(strconv.FormatInt(v, 10)+"\n")); err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	return nil
}
