package push_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/push"
	"github.com/pvpipe/pvauth/push/fcmtest"
)

func newFCM(t *testing.T, fcm *fcmtest.Server) push.Sender {
	t.Helper()
	s, err := push.New(context.Background(), config.FCM{Enabled: true, ProjectID: "pvpipe-test", Endpoint: fcm.URL + "/"})
	if err != nil {
		t.Fatalf("push.New: %v", err)
	}
	if _, ok := s.(*push.FCM); !ok {
		t.Fatalf("push.New with FCM enabled gave %T, want *push.FCM", s)
	}
	return s
}

func TestFCMSenderDeliversDataMessage(t *testing.T) {
	fcm := fcmtest.New(t)
	s := newFCM(t, fcm)
	data := map[string]string{
		"type":           "action_confirmation",
		"confirmationId": "0b0c5a5e-4a4b-4a1e-9d7e-0d2f4b7a8c11",
		"actionType":     "transfer_money",
		"challenge":      "Y2hhbGxlbmdl",
		"expiresAt":      "2025-08-20T14:35:00Z",
	}
	if err := s.Send(context.Background(), "device-token-1", data); err != nil {
		t.Fatalf("Send: %v", err)
	}
	ms := fcm.Messages()
	if len(ms) != 1 {
		t.Fatalf("the double received %d messages, want 1", len(ms))
	}
	m := ms[0]
	if m.Status != http.StatusOK || !strings.HasPrefix(m.Name, "projects/pvpipe-test/messages/") {
		t.Errorf("answer: status %d name %q", m.Status, m.Name)
	}
	if m.Project != "pvpipe-test" {
		t.Errorf("project in path = %q, want pvpipe-test", m.Project)
	}
	if m.Token != "device-token-1" || m.Topic != "" || m.Condition != "" {
		t.Errorf("target: token %q topic %q condition %q", m.Token, m.Topic, m.Condition)
	}
	if len(m.Data) != len(data) {
		t.Errorf("data = %v, want %v", m.Data, data)
	}
	for k, v := range data {
		if m.Data[k] != v {
			t.Errorf("data[%q] = %q, want %q", k, m.Data[k], v)
		}
	}
	if m.Notification != nil {
		t.Errorf("a data message must carry no notification block: %v", m.Notification)
	}
	if m.ValidateOnly {
		t.Error("sent as validate_only")
	}
	if m.Android["priority"] != "high" {
		t.Errorf("android = %v, want priority high", m.Android)
	}
	hdr, _ := m.APNS["headers"].(map[string]any)
	if hdr["apns-priority"] != "10" || hdr["apns-push-type"] != "background" {
		t.Errorf("apns headers = %v", hdr)
	}
	payload, _ := m.APNS["payload"].(map[string]any)
	aps, _ := payload["aps"].(map[string]any)
	if aps["content-available"] != float64(1) {
		t.Errorf("apns payload = %v, want aps.content-available 1", m.APNS["payload"])
	}
	// It is the real Admin SDK talking, unauthenticated because no credentials file is set.
	if c := m.Header.Get("X-Firebase-Client"); !strings.HasPrefix(c, "fire-admin-go/") {
		t.Errorf("X-Firebase-Client = %q, want the Admin SDK's", c)
	}
	if m.Header.Get("X-Goog-Api-Format-Version") != "2" {
		t.Errorf("X-GOOG-API-FORMAT-VERSION = %q", m.Header.Get("X-Goog-Api-Format-Version"))
	}
	if a := m.Header.Get("Authorization"); a != "" {
		t.Errorf("Authorization = %q, want none without credentials", a)
	}
}

func TestFCMSenderUnregistered(t *testing.T) {
	fcm := fcmtest.New(t)
	s := newFCM(t, fcm)
	fcm.FailToken("stale-token", fcmtest.Unregistered)
	err := s.Send(context.Background(), "stale-token", map[string]string{"k": "v"})
	if !errors.Is(err, push.ErrUnregistered) {
		t.Fatalf("Send to an unregistered token: %v, want push.ErrUnregistered", err)
	}
	// Other tokens are unaffected.
	if err := s.Send(context.Background(), "fresh-token", map[string]string{"k": "v"}); err != nil {
		t.Fatalf("Send to another token: %v", err)
	}
	if n := len(fcm.MessagesTo("stale-token")); n != 1 {
		t.Errorf("UNREGISTERED was retried: %d requests", n)
	}
}

func TestFCMSenderServerErrors(t *testing.T) {
	fcm := fcmtest.New(t)
	s := newFCM(t, fcm)
	for _, kind := range []fcmtest.FailKind{fcmtest.Internal, fcmtest.InvalidArgument} {
		tok := "token-" + kind.String()
		fcm.FailToken(tok, kind)
		err := s.Send(context.Background(), tok, map[string]string{"k": "v"})
		if err == nil {
			t.Errorf("%s: Send succeeded", kind)
			continue
		}
		if errors.Is(err, push.ErrUnregistered) {
			t.Errorf("%s: reported as unregistered: %v", kind, err)
		}
	}
}

// The SDK retries 503s with backoff for several seconds; the sender's own deadline bounds
// a send, and a hanging FCM too.
func TestFCMSenderDeadline(t *testing.T) {
	fcm := fcmtest.New(t)
	s := newFCM(t, fcm)
	fcm.FailToken("hang", fcmtest.Hang)
	start := time.Now()
	err := s.Send(context.Background(), "hang", map[string]string{"k": "v"})
	took := time.Since(start)
	if err == nil {
		t.Fatal("Send to a hanging FCM succeeded")
	}
	if took < push.SendTimeout-100*time.Millisecond || took > push.SendTimeout+time.Second {
		t.Errorf("Send to a hanging FCM took %v, want about push.SendTimeout (%v)", took, push.SendTimeout)
	}
	// 503s are retried by the SDK, within the same deadline.
	fcm.FailToken("unavailable", fcmtest.Unavailable)
	start = time.Now()
	if err := s.Send(context.Background(), "unavailable", map[string]string{"k": "v"}); err == nil || errors.Is(err, push.ErrUnregistered) {
		t.Errorf("Send to an unavailable FCM: %v", err)
	}
	if took := time.Since(start); took > push.SendTimeout+time.Second {
		t.Errorf("Send to an unavailable FCM took %v", took)
	}
	if n := len(fcm.MessagesTo("unavailable")); n < 2 {
		t.Errorf("503 was tried %d times, want the SDK's retries", n)
	}
	// A shorter caller deadline wins.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := s.Send(ctx, "hang", map[string]string{"k": "v"}); err == nil {
		t.Fatal("Send with an expired context succeeded")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Send ignored the caller's deadline: %v", took)
	}
}

func TestNewDisabledIsNoop(t *testing.T) {
	s, err := push.New(context.Background(), config.FCM{Enabled: false, ProjectID: "whatever", Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatalf("push.New disabled: %v", err)
	}
	if _, ok := s.(push.Noop); !ok {
		t.Fatalf("push.New disabled gave %T, want push.Noop", s)
	}
	if err := s.Send(context.Background(), "t", map[string]string{"k": "v"}); err != nil {
		t.Fatalf("Noop.Send: %v", err)
	}
}

func TestNewConfigErrors(t *testing.T) {
	fcm := fcmtest.New(t)
	if _, err := push.New(context.Background(), config.FCM{Enabled: true, Endpoint: fcm.URL}); err == nil || !strings.Contains(err.Error(), "project_id") {
		t.Errorf("missing project id: err = %v, want one naming push.fcm.project_id", err)
	}
	if _, err := push.New(context.Background(), config.FCM{Enabled: true, ProjectID: "p"}); err == nil || !strings.Contains(err.Error(), "credentials_file") {
		t.Errorf("no credentials and no endpoint: err = %v, want one naming push.fcm.credentials_file", err)
	}
	if n := len(fcm.Messages()); n != 0 {
		t.Errorf("config errors sent %d messages", n)
	}
}
