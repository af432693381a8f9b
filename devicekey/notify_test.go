package devicekey_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/push"
	"github.com/pvpipe/pvauth/x/secretbox"
)

type ntDevices struct {
	devicekey.Persister
	mu      sync.Mutex
	devices []devicekey.Device
	cleared []string
}

func (p *ntDevices) ListDevices(_ context.Context, uid int64, activeOnly bool) ([]devicekey.Device, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []devicekey.Device
	for _, d := range p.devices {
		if d.UserID == uid && (d.IsActive || !activeOnly) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (p *ntDevices) UpdateDeviceFCMToken(_ context.Context, uid int64, id string, tok *string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleared = append(p.cleared, id)
	return true, nil
}

type ntSender struct {
	mu   sync.Mutex
	sent map[string]map[string]string
	fail map[string]error
}

func (s *ntSender) Send(ctx context.Context, tok string, data map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent[tok] = data
	return s.fail[tok]
}

type ntAudit struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *ntAudit) InsertAuditEvents(_ context.Context, es []audit.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, es...)
	return nil
}
func (a *ntAudit) ListAuditEvents(context.Context, audit.Filter) ([]audit.Event, error) {
	return nil, nil
}

// The notifier sends to every active device with a token except the one named, clears
// an UNREGISTERED token, and audits failures.
func TestNotifier(t *testing.T) {
	box, err := secretbox.New([]string{"0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	dev := func(id string, uid int64, active bool, tok string) devicekey.Device {
		d := devicekey.Device{ID: id, UserID: uid, IsActive: active}
		if tok != "" {
			enc, err := devicekey.SealFCMToken(box, id, tok)
			if err != nil {
				t.Fatal(err)
			}
			d.FCMToken = &enc
		}
		return d
	}
	p := &ntDevices{devices: []devicekey.Device{
		dev("a", 1, true, "tok-a"), dev("b", 1, true, "tok-b"), dev("new", 1, true, "tok-new"),
		dev("none", 1, true, ""), dev("off", 1, false, "tok-off"), dev("other", 2, true, "tok-other"),
		dev("stale", 1, true, "tok-stale"),
	}}
	// A token sealed for another device does not open for this one.
	moved := *p.devices[0].FCMToken
	p.devices = append(p.devices, devicekey.Device{ID: "moved", UserID: 1, IsActive: true, FCMToken: &moved})
	s := &ntSender{sent: map[string]map[string]string{}, fail: map[string]error{
		"tok-stale": push.ErrUnregistered, "tok-b": errors.New("boom"),
	}}
	store := &ntAudit{}
	log := audit.NewLogger(store)
	defer log.Close()
	n := devicekey.NewNotifier(p, box, s, log)

	n.AuthenticatorAdded(context.Background(), 1, devicekey.AuthenticatorDevice, "new", "Phone", "new")
	log.Flush()
	if len(s.sent) != 3 || s.sent["tok-a"] == nil || s.sent["tok-b"] == nil || s.sent["tok-stale"] == nil {
		t.Errorf("sent to %v, want tok-a, tok-b and tok-stale only", s.sent)
	}
	if d := s.sent["tok-a"]; d["type"] != "authenticator_added" || d["kind"] != "device" || d["id"] != "new" || d["name"] != "Phone" || len(d) != 4 {
		t.Errorf("data %v", d)
	}
	if len(p.cleared) != 1 || p.cleared[0] != "stale" {
		t.Errorf("cleared %v, want the unregistered device only", p.cleared)
	}
	failures, added := 0, 0
	for _, e := range store.events {
		switch e.Type {
		case audit.TypePushFailure:
			failures++
			if e.Result != audit.ResultFailure || e.DeviceID == nil || e.Metadata["pushType"] != "authenticator_added" {
				t.Errorf("failure event %+v", e)
			}
		case devicekey.AuditTypeAuthenticatorAdded:
			added++
			if e.Metadata["devices"] != 3 || e.Metadata["kind"] != "device" {
				t.Errorf("added event %+v", e)
			}
		}
	}
	if failures != 2 || added != 1 {
		t.Errorf("%d failure and %d added events, want 2 and 1: %+v", failures, added, store.events)
	}
}
