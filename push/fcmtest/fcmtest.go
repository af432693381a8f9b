// Package fcmtest is a test double of Firebase Cloud Messaging: an httptest server that
// speaks the FCM HTTP v1 wire format the Firebase Admin SDK
// (firebase.google.com/go/v4/messaging) uses, so that tests exercise the real SDK.
//
//	POST /v1/projects/{project}/messages:send   {"message": {...}, "validate_only"?: bool}
//	200 {"name": "projects/{project}/messages/{n}"}
//
// Errors are answered in the FCM v1 error format, which the SDK parses into
// messaging.IsUnregistered and friends:
//
//	{"error": {"code": 404, "message": "…", "status": "NOT_FOUND",
//	  "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}
//
// Point pvauth at it with push.fcm.enabled: true, push.fcm.project_id: <any>,
// push.fcm.endpoint: Server.URL (no credentials file: requests go unauthenticated).
package fcmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// FailKind is how the server answers a token told to fail.
type FailKind int

const (
	// Unregistered answers 404 NOT_FOUND with FCM error code UNREGISTERED (the token is
	// no longer valid; messaging.IsUnregistered is true).
	Unregistered FailKind = iota + 1
	// Internal answers 500 INTERNAL (the SDK does not retry it).
	Internal
	// Unavailable answers 503 UNAVAILABLE (the SDK retries it with backoff).
	Unavailable
	// InvalidArgument answers 400 INVALID_ARGUMENT.
	InvalidArgument
	// Hang never answers: the request blocks until the client gives up (its context is
	// cancelled or its deadline passes) or the server closes.
	Hang
)

func (k FailKind) String() string {
	switch k {
	case Unregistered:
		return "UNREGISTERED"
	case Internal:
		return "INTERNAL"
	case Unavailable:
		return "UNAVAILABLE"
	case InvalidArgument:
		return "INVALID_ARGUMENT"
	case Hang:
		return "HANG"
	}
	return fmt.Sprintf("FailKind(%d)", int(k))
}

// Message is one send request the server received, whatever it answered.
type Message struct {
	// Project is the {project} of the request path.
	Project string
	// Token, Topic and Condition are the target (exactly one is set by the SDK).
	Token     string
	Topic     string
	Condition string
	// Data is message.data.
	Data map[string]string
	// Notification, Android, APNS and Webpush are the platform blocks as decoded JSON
	// (nil when absent).
	Notification map[string]any
	Android      map[string]any
	APNS         map[string]any
	Webpush      map[string]any
	// ValidateOnly is the dry-run flag of the request.
	ValidateOnly bool
	// Raw is the whole request body.
	Raw json.RawMessage
	// Header is the request's headers (the SDK sends X-Firebase-Client and
	// X-GOOG-API-FORMAT-VERSION; Authorization only when it has credentials).
	Header http.Header
	// Status is the HTTP status answered (0 while a hanging request is open, or when the
	// client gave up on it).
	Status int
	// Name is the message name answered on success.
	Name string
	// At is when the request arrived.
	At time.Time
}

// Server is a running FCM double.
type Server struct {
	// URL is the base URL to configure as push.fcm.endpoint (the SDK adds /v1 through
	// pvauth's push package).
	URL string

	srv       *httptest.Server
	stop      chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	msgs  []*Message
	fails map[string]FailKind
	all   FailKind
	seq   int
}

// New starts a server that is closed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{stop: make(chan struct{}), fails: map[string]FailKind{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close releases hanging requests and stops the server (idempotent).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// FailToken makes every later send to token fail with kind; kind 0 makes it succeed again.
func (s *Server) FailToken(token string, kind FailKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == 0 {
		delete(s.fails, token)
		return
	}
	s.fails[token] = kind
}

// FailAll makes every send fail with kind (0: back to normal); a FailToken setting wins.
func (s *Server) FailAll(kind FailKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = kind
}

// Messages returns copies of every send request received so far, in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = *m
	}
	return out
}

// MessagesTo returns the received send requests addressed to token.
func (s *Server) MessagesTo(token string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		if m.Token == token {
			out = append(out, m)
		}
	}
	return out
}

// Delivered returns the received send requests that were answered 200.
func (s *Server) Delivered() []Message {
	var out []Message
	for _, m := range s.Messages() {
		if m.Status == http.StatusOK {
			out = append(out, m)
		}
	}
	return out
}

// Reset forgets the recorded messages (failure settings stay).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = nil
}

// WaitFor polls until cond holds for the recorded messages or timeout passes; it returns
// the messages of the last poll and whether cond held.
func (s *Server) WaitFor(timeout time.Duration, cond func([]Message) bool) ([]Message, bool) {
	deadline := time.Now().Add(timeout)
	for {
		ms := s.Messages()
		if cond(ms) {
			return ms, true
		}
		if time.Now().After(deadline) {
			return ms, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const fcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

// fcmError is one error answer in the Google API error format with an FcmError detail,
// as FCM v1 does: HTTP code, canonical status name, message and the FcmError errorCode
// ("" for none).
type fcmError struct {
	code            int
	status, message string
	fcmCode         string
}

func (e *fcmError) write(w http.ResponseWriter) {
	body := map[string]any{"code": e.code, "message": e.message, "status": e.status}
	if e.fcmCode != "" {
		body["details"] = []any{map[string]any{"@type": fcmErrorType, "errorCode": e.fcmCode}}
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

// failures are the answers of the failing kinds that answer.
var failures = map[FailKind]*fcmError{
	Unregistered:    {http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"},
	Internal:        {http.StatusInternalServerError, "INTERNAL", "Internal error encountered.", "INTERNAL"},
	Unavailable:     {http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"},
	InvalidArgument: {http.StatusBadRequest, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT"},
}

var errNoTarget = &fcmError{http.StatusBadRequest, "INVALID_ARGUMENT", "Exactly one of token, topic or condition must be specified.", "INVALID_ARGUMENT"}

type sendRequest struct {
	ValidateOnly bool `json:"validate_only"`
	Message      *struct {
		Token        string            `json:"token"`
		Topic        string            `json:"topic"`
		Condition    string            `json:"condition"`
		Data         map[string]string `json:"data"`
		Notification map[string]any    `json:"notification"`
		Android      map[string]any    `json:"android"`
		APNS         map[string]any    `json:"apns"`
		Webpush      map[string]any    `json:"webpush"`
	} `json:"message"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m, fail := readSend(r)
	if fail != nil {
		fail.write(w)
		return
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	kind, failing := s.fails[m.Token]
	if !failing {
		kind = s.all
	}
	s.seq++
	seq := s.seq
	s.mu.Unlock()

	targets := 0
	for _, v := range []string{m.Token, m.Topic, m.Condition} {
		if v != "" {
			targets++
		}
	}
	if fail = failures[kind]; targets != 1 {
		fail = errNoTarget
	}
	status, name := http.StatusOK, fmt.Sprintf("projects/%s/messages/%d", m.Project, 1000000+seq)
	switch {
	case fail != nil:
		status, name = fail.code, ""
	case kind == Hang:
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return
	}
	s.mu.Lock()
	m.Status, m.Name = status, name
	s.mu.Unlock()
	if fail != nil {
		fail.write(w)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(map[string]string{"name": name})
}

// readSend reads a send request into a Message; a request that is not one is the
// error to answer.
func readSend(r *http.Request) (*Message, *fcmError) {
	// Only POST /v1/projects/{project}/messages:send exists.
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/projects/")
	project, tail, _ := strings.Cut(rest, "/")
	if !ok || project == "" || tail != "messages:send" {
		return nil, &fcmError{http.StatusNotFound, "NOT_FOUND", "The requested URL " + r.URL.Path + " was not found on this server.", ""}
	}
	if r.Method != http.MethodPost {
		return nil, &fcmError{http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "Only POST is supported.", ""}
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, &fcmError{http.StatusBadRequest, "INVALID_ARGUMENT", "Unreadable body.", "INVALID_ARGUMENT"}
	}
	var req sendRequest
	if err := json.Unmarshal(raw, &req); err != nil || req.Message == nil {
		return nil, &fcmError{http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received: expected {\"message\": {...}}.", "INVALID_ARGUMENT"}
	}
	return &Message{
		Project: project, Token: req.Message.Token, Topic: req.Message.Topic, Condition: req.Message.Condition,
		Data: req.Message.Data, Notification: req.Message.Notification, Android: req.Message.Android,
		APNS: req.Message.APNS, Webpush: req.Message.Webpush, ValidateOnly: req.ValidateOnly,
		Raw: json.RawMessage(raw), Header: r.Header.Clone(), At: time.Now(),
	}, nil
}
