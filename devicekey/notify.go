package devicekey

import (
	"context"
	"errors"
	"sync"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/push"
	"github.com/pvpipe/pvauth/x/secretbox"
)

// Notifier sends a push data message to the active devices of a user that have an FCM
// token. Sends run concurrently, each under push.SendTimeout, detached from the caller's
// cancellation; a failure is audited (push.failure), never returned: a push is a
// courtesy the flows do not depend on. An UNREGISTERED answer clears the device's token.
type Notifier struct {
	devices Persister
	box     *secretbox.Box
	sender  push.Sender
	audit   *audit.Logger
}

// NewNotifier builds a notifier.
func NewNotifier(devices Persister, box *secretbox.Box, sender push.Sender, log *audit.Logger) *Notifier {
	return &Notifier{devices: devices, box: box, sender: sender, audit: log}
}

// NotifierProvider is implemented by the registry.
type NotifierProvider interface {
	DeviceNotifier() *Notifier
}

// Message is one push to a user's devices.
type Message struct {
	UserID int64
	// Data is the FCM data payload.
	Data map[string]string
	// ExceptDeviceID, when set, is left out (e.g. the device that was just added).
	ExceptDeviceID string
	// Metadata goes into every push.failure audit event (what the push was about).
	Metadata map[string]any
}

// Notify sends m and returns once every send has finished or timed out, so that the push
// is on its way when the caller answers; a slow FCM delays by at most push.SendTimeout.
// It returns how many devices it sent to.
func (n *Notifier) Notify(ctx context.Context, m Message) int {
	ctx = context.WithoutCancel(ctx)
	devices, err := n.devices.ListDevices(ctx, m.UserID, true)
	if err != nil {
		n.fail(ctx, m, "", "listing devices for push failed", err)
		return 0
	}
	var wg sync.WaitGroup
	sent := 0
	for i := range devices {
		d := &devices[i]
		if d.ID == m.ExceptDeviceID {
			continue
		}
		tok := DecryptFCMToken(n.box, d)
		if tok == "" {
			continue
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, push.SendTimeout)
			defer cancel()
			err := n.sender.Send(sctx, tok, m.Data)
			if err == nil {
				return
			}
			reason := "push failed"
			if errors.Is(err, push.ErrUnregistered) {
				reason = "push token unregistered; cleared"
				_, _ = n.devices.UpdateDeviceFCMToken(ctx, d.UserID, d.ID, nil)
			}
			n.fail(ctx, m, d.ID, reason, err)
		}()
	}
	wg.Wait()
	return sent
}

func (n *Notifier) fail(ctx context.Context, m Message, deviceID, reason string, err error) {
	md := make(map[string]any, len(m.Metadata)+2)
	for k, v := range m.Metadata {
		md[k] = v
	}
	md["pushType"] = m.Data["type"]
	md["error"] = truncate(err.Error(), 200)
	ev := audit.Event{Type: audit.TypePushFailure, UserID: audit.Int64(m.UserID), Result: audit.ResultFailure, Reason: reason, Metadata: md}
	if deviceID != "" {
		ev.DeviceID = &deviceID
	}
	n.audit.Log(ctx, ev)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Kinds of authenticator in an authenticator_added push.
const (
	AuthenticatorDevice  = "device"
	AuthenticatorPasskey = "passkey"
)

// AuditTypeAuthenticatorAdded is the audit event of the authenticator_added push.
const AuditTypeAuthenticatorAdded = "push.authenticator_added"

// AuthenticatorAdded tells the user's other devices that a device key or a passkey was
// added (API.md §3, step-up): `{type: "authenticator_added", kind, id, name}` to every
// active device with an FCM token except newDeviceID (the device that was just added,
// when kind is "device"). The push is audited with how many devices it went to.
func (n *Notifier) AuthenticatorAdded(ctx context.Context, userID int64, kind, id, name, newDeviceID string) {
	md := map[string]any{"kind": kind, "authenticatorId": id}
	sent := n.Notify(ctx, Message{
		UserID:         userID,
		Data:           map[string]string{"type": "authenticator_added", "kind": kind, "id": id, "name": name},
		ExceptDeviceID: newDeviceID,
		Metadata:       md,
	})
	ev := audit.Event{Type: AuditTypeAuthenticatorAdded, UserID: audit.Int64(userID), Result: audit.ResultSuccess,
		Metadata: map[string]any{"kind": kind, "authenticatorId": id, "devices": sent}}
	if kind == AuthenticatorDevice && newDeviceID != "" {
		ev.DeviceID = &newDeviceID
	}
	n.audit.Log(context.WithoutCancel(ctx), ev)
}
