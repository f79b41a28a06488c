package workflows

import (
	"bytes"
	"errors"
	"fmt"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"
)

// MaxSignalBytes bounds a signal's payload. Nothing a worker or watcher
// sends comes near it; a larger payload is hostile or broken and ignored.
const MaxSignalBytes = 64 << 10

// receiveSignal takes the next signal of c and decodes it into v here, not
// in the SDK: the SDK drops a payload it cannot decode inside Receive and
// then blocks for the next signal, which inside a selector would hold up
// the zombie timer and stop requests until a good signal came. Decoded
// here, a bad payload is a value the workflow counts and ignores.
func receiveSignal(ctx workflow.Context, c workflow.ReceiveChannel, v any) error {
	var raw converter.RawValue
	c.Receive(ctx, &raw)
	return decodeSignal(raw, v)
}

// receiveSignalAsync is receiveSignal without blocking; ok is false when
// nothing was buffered.
func receiveSignalAsync(c workflow.ReceiveChannel, v any) (ok bool, err error) {
	var raw converter.RawValue
	if !c.ReceiveAsync(&raw) {
		return false, nil
	}
	return true, decodeSignal(raw, v)
}

// drainSignals applies every signal buffered in c, in order, with whatever
// error its payload had.
func drainSignals[T any](c workflow.ReceiveChannel, apply func(T, error)) {
	for {
		var v T
		ok, err := receiveSignalAsync(c, &v)
		if !ok {
			return
		}
		apply(v, err)
	}
}

func decodeSignal(raw converter.RawValue, v any) error {
	p := raw.Payload()
	switch {
	case p == nil:
		return errors.New("signal without payload")
	case len(p.Data) > MaxSignalBytes:
		return fmt.Errorf("payload of %d bytes is over the %d-byte limit", len(p.Data), MaxSignalBytes)
	case string(bytes.TrimSpace(p.Data)) == "null":
		// JSON's null decodes to the zero value: it would pass for an
		// empty heartbeat that nobody sent.
		return errors.New("payload is null")
	}
	// The worker program uses the default data converter; one with a
	// custom converter (encryption) would decode with it here.
	if err := converter.GetDefaultDataConverter().FromPayload(p, v); err != nil {
		return fmt.Errorf("undecodable payload: %w", err)
	}
	return nil
}
