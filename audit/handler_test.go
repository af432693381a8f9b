package audit_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/persistence/conformance"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/x"
)

type handlerDeps struct{ p audit.Persister }

func (d handlerDeps) AuditPersister() audit.Persister { return d.p }

// listServer serves the admin router with the audit handler over real HTTP.
func listServer(t *testing.T, p audit.Persister) *httptest.Server {
	t.Helper()
	r := x.NewAdminRouter()
	audit.NewHandler(handlerDeps{p}).RegisterAdminRoutes(r)
	srv := httptest.NewServer(x.Chain(r, x.WithRequestID))
	t.Cleanup(srv.Close)
	return srv
}

type listBody struct {
	Data struct {
		Events        []json.RawMessage `json:"events"`
		NextPageToken *string           `json:"nextPageToken"`
	} `json:"data"`
}

func get(t *testing.T, srv *httptest.Server, query url.Values) (int, []byte) {
	t.Helper()
	u := srv.URL + audit.RouteAdminEvents
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	return res.StatusCode, b
}

// list GETs one page and returns its events, decoded, and its token.
func list(t *testing.T, srv *httptest.Server, query url.Values) ([]audit.Event, string) {
	t.Helper()
	code, b := get(t, srv, query)
	if code != http.StatusOK {
		t.Fatalf("GET ?%s: %d %s", query.Encode(), code, b)
	}
	var body listBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	if body.Data.Events == nil {
		t.Fatalf("events missing or null: %s", b)
	}
	if body.Data.NextPageToken == nil {
		t.Fatalf("nextPageToken missing: %s", b)
	}
	events := make([]audit.Event, len(body.Data.Events))
	for i, raw := range body.Data.Events {
		if err := json.Unmarshal(raw, &events[i]); err != nil {
			t.Fatal(err)
		}
	}
	return events, *body.Data.NextPageToken
}

// walk follows page tokens to the end and returns every event in order.
func walk(t *testing.T, srv *httptest.Server, query url.Values) (events []audit.Event, pages int) {
	t.Helper()
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	for {
		page, next := list(t, srv, q)
		pages++
		events = append(events, page...)
		if next == "" {
			return events, pages
		}
		if len(page) == 0 {
			t.Fatal("an empty page carries a next token")
		}
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		q.Set("page_token", next)
	}
}

// seedHandler stores n events oldest first, one minute apart from base.
// userId cycles 1..4; types cycle login, admin.identity.create, otp.verify.
func seedHandler(t *testing.T, p audit.Persister, n int, base time.Time) []audit.Event {
	t.Helper()
	types := []string{audit.TypeLogin, audit.TypeIdentityCreate, audit.TypeOTPVerify}
	events := make([]audit.Event, n)
	for i := range events {
		events[i] = audit.Event{
			ID:        uuid.Must(uuid.NewV7()).String(),
			Type:      types[i%3],
			UserID:    audit.Int64(int64(i%4 + 1)),
			IP:        "198.51.100.1",
			UserAgent: "test",
			Result:    audit.ResultSuccess,
			CreatedAt: base.Add(time.Duration(i) * time.Minute),
		}
	}
	if err := p.InsertAuditEvents(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	return events
}

func gotIDs(t *testing.T, events []audit.Event) []string {
	t.Helper()
	seen := map[string]bool{}
	out := make([]string, len(events))
	for i, e := range events {
		if seen[e.ID] {
			t.Fatalf("event %s listed twice", e.ID)
		}
		seen[e.ID] = true
		out[i] = e.ID
	}
	return out
}

func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got %d %v\nwant %d %v", what, len(got), got, len(want), want)
	}
}

func TestHandlerListAndFilters(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		srv := listServer(t, p)
		base := time.Date(2025, 8, 20, 12, 0, 0, 0, time.UTC)

		t.Run("empty", func(t *testing.T) {
			events, next := list(t, srv, nil)
			if len(events) != 0 || next != "" {
				t.Fatalf("empty database: %d events, token %q", len(events), next)
			}
			_, b := get(t, srv, nil)
			if !strings.Contains(string(b), `"events":[]`) {
				t.Fatalf("events must be [] not null: %s", b)
			}
		})

		all := seedHandler(t, p, 23, base)
		// One event with every optional field, to check the wire shape.
		dev := uuid.NewString()
		special := audit.Event{
			ID: uuid.Must(uuid.NewV7()).String(), Type: audit.TypeDeviceRegister, UserID: audit.Int64(7),
			DeviceID: &dev, IP: "2001:db8::7", UserAgent: "app", Result: audit.ResultFailure, Reason: "Invalid public key format",
			CreatedAt: base.Add(-time.Hour), Metadata: map[string]any{"challengeHash": audit.Hash("x"), "n": 3},
		}
		if err := p.InsertAuditEvents(context.Background(), []audit.Event{special}); err != nil {
			t.Fatal(err)
		}
		all = append(all, special) // newest by id

		t.Run("all newest first", func(t *testing.T) {
			events, next := list(t, srv, nil)
			if next != "" {
				t.Fatalf("24 events fit the default page, got token %q", next)
			}
			sameIDs(t, "all", gotIDs(t, events), conformance.NewestFirst(all, func(audit.Event) bool { return true }))
		})

		t.Run("wire shape", func(t *testing.T) {
			_, b := get(t, srv, url.Values{"userId": {"7"}})
			var raw struct {
				Data struct {
					Events []map[string]json.RawMessage `json:"events"`
				} `json:"data"`
			}
			if err := json.Unmarshal(b, &raw); err != nil || len(raw.Data.Events) != 1 {
				t.Fatalf("body %s: %v", b, err)
			}
			e := raw.Data.Events[0]
			for _, k := range []string{"id", "type", "userId", "deviceId", "ip", "userAgent", "result", "reason", "createdAt", "metadata"} {
				if _, ok := e[k]; !ok {
					t.Fatalf("field %q missing: %s", k, b)
				}
			}
			if len(e) != 10 {
				t.Fatalf("unexpected fields: %s", b)
			}
			if string(e["userId"]) != "7" || string(e["deviceId"]) != `"`+dev+`"` {
				t.Fatalf("userId/deviceId: %s", b)
			}
			if string(e["createdAt"]) != `"2025-08-20T11:00:00Z"` {
				t.Fatalf("createdAt = %s", e["createdAt"])
			}
			if string(e["metadata"]) != `{"challengeHash":"`+audit.Hash("x")+`","n":3}` {
				t.Fatalf("metadata = %s", e["metadata"])
			}

			_, b = get(t, srv, url.Values{"userId": {"1"}, "page_size": {"1"}})
			raw.Data.Events = nil
			_ = json.Unmarshal(b, &raw)
			e = raw.Data.Events[0]
			if _, ok := e["deviceId"]; ok {
				t.Fatalf("deviceId present without a device: %s", b)
			}
			if _, ok := e["reason"]; ok {
				t.Fatalf("reason present without a reason: %s", b)
			}
			if string(e["metadata"]) != "{}" {
				t.Fatalf("metadata = %s, want {}", e["metadata"])
			}
			if !regexp.MustCompile(`^"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"$`).Match(e["createdAt"]) {
				t.Fatalf("createdAt = %s", e["createdAt"])
			}
		})

		t.Run("userId", func(t *testing.T) {
			events, _ := walk(t, srv, url.Values{"userId": {"2"}})
			sameIDs(t, "user 2", gotIDs(t, events), conformance.NewestFirst(all, func(e audit.Event) bool { return *e.UserID == 2 }))
			if events, _ := walk(t, srv, url.Values{"userId": {"999"}}); len(events) != 0 {
				t.Fatalf("unknown user: %d events", len(events))
			}
		})

		t.Run("type", func(t *testing.T) {
			events, _ := walk(t, srv, url.Values{"type": {audit.TypeOTPVerify}})
			sameIDs(t, "otp.verify", gotIDs(t, events), conformance.NewestFirst(all, func(e audit.Event) bool { return e.Type == audit.TypeOTPVerify }))
			events, _ = walk(t, srv, url.Values{"type": {"admin.*"}})
			sameIDs(t, "admin.*", gotIDs(t, events), conformance.NewestFirst(all, func(e audit.Event) bool { return strings.HasPrefix(e.Type, "admin.") }))
		})

		t.Run("since", func(t *testing.T) {
			since := base.Add(20 * time.Minute)
			keep := func(e audit.Event) bool { return !e.CreatedAt.Before(since) }
			events, _ := walk(t, srv, url.Values{"since": {since.Format(time.RFC3339)}})
			sameIDs(t, "since", gotIDs(t, events), conformance.NewestFirst(all, keep))
			if len(events) != 3 {
				t.Fatalf("since: %d events, want 3", len(events))
			}
			// The same instant with an offset.
			events, _ = walk(t, srv, url.Values{"since": {since.In(time.FixedZone("", -3*3600)).Format(time.RFC3339)}})
			sameIDs(t, "since with offset", gotIDs(t, events), conformance.NewestFirst(all, keep))
		})

		t.Run("combined", func(t *testing.T) {
			since := base.Add(5 * time.Minute)
			events, _ := walk(t, srv, url.Values{"userId": {"1"}, "type": {audit.TypeLogin}, "since": {since.Format(time.RFC3339)}, "page_size": {"1"}})
			sameIDs(t, "combined", gotIDs(t, events), conformance.NewestFirst(all, func(e audit.Event) bool {
				return *e.UserID == 1 && e.Type == audit.TypeLogin && !e.CreatedAt.Before(since)
			}))
		})
	})
}

func TestHandlerPaging(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		srv := listServer(t, p)
		all := seedHandler(t, p, 130, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		everything := conformance.NewestFirst(all, func(audit.Event) bool { return true })

		for _, tc := range []struct {
			size  string
			pages int
		}{{"1", 130}, {"7", 19}, {"13", 10}, {"65", 2}, {"129", 2}, {"130", 1}, {"500", 1}, {"", 2}} {
			t.Run("page_size="+tc.size, func(t *testing.T) {
				q := url.Values{}
				if tc.size != "" {
					q.Set("page_size", tc.size)
				}
				events, pages := walk(t, srv, q)
				sameIDs(t, "walk", gotIDs(t, events), everything)
				if pages != tc.pages {
					t.Fatalf("%d pages, want %d", pages, tc.pages)
				}
			})
		}

		t.Run("default page size is 100", func(t *testing.T) {
			events, next := list(t, srv, nil)
			if len(events) != 100 || next == "" {
				t.Fatalf("first page: %d events, token %q", len(events), next)
			}
			sameIDs(t, "first page", gotIDs(t, events), everything[:100])
			rest, next2 := list(t, srv, url.Values{"page_token": {next}})
			if len(rest) != 30 || next2 != "" {
				t.Fatalf("second page: %d events, token %q", len(rest), next2)
			}
		})

		t.Run("events logged between pages do not disturb the walk", func(t *testing.T) {
			first, next := list(t, srv, url.Values{"page_size": {"50"}})
			seedHandler(t, p, 5, time.Now().UTC())
			var seen []audit.Event
			seen = append(seen, first...)
			q := url.Values{"page_size": {"50"}, "page_token": {next}}
			for next != "" {
				var page []audit.Event
				page, next = list(t, srv, q)
				seen = append(seen, page...)
				q.Set("page_token", next)
			}
			sameIDs(t, "walk with inserts", gotIDs(t, seen), everything)
		})
	})
}

func TestHandlerBadParams(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		srv := listServer(t, p)
		seedHandler(t, p, 3, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))

		b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		for _, tc := range []struct {
			param, value string
		}{
			{"userId", "abc"},
			{"userId", "0"},
			{"userId", "-4"},
			{"userId", "1.5"},
			{"userId", "99999999999999999999"},
			{"since", "yesterday"},
			{"since", "2025-08-20"},
			{"since", "2025-08-20 14:30:00"},
			{"since", "1724164200"},
			{"page_token", "!!!"},
			{"page_token", b64("not-a-uuid")},
			{"page_token", b64("' OR 1=1 --")},
			{"page_token", b64(strings.ReplaceAll(uuid.NewString(), "-", ""))},
			{"page_size", "0"},
			{"page_size", "501"},
			{"page_size", "ten"},
			{"type", strings.Repeat("t", 65)},
		} {
			t.Run(tc.param+"="+tc.value, func(t *testing.T) {
				code, b := get(t, srv, url.Values{tc.param: {tc.value}})
				if code != http.StatusBadRequest {
					t.Fatalf("status %d, want 400: %s", code, b)
				}
				var e x.ErrorBody
				if err := json.Unmarshal(b, &e); err != nil {
					t.Fatalf("error body %s: %v", b, err)
				}
				if e.StatusCode != 400 || e.Error != "bad_request" || !strings.Contains(e.Message, "'"+tc.param+"'") {
					t.Fatalf("error body %s does not name %q", b, tc.param)
				}
			})
		}

		// A token made by the server is accepted in any base64url padding form.
		_, next := list(t, srv, url.Values{"page_size": {"1"}})
		if next == "" {
			t.Fatal("no token")
		}
		padded := next + strings.Repeat("=", (4-len(next)%4)%4)
		a, _ := list(t, srv, url.Values{"page_size": {"1"}, "page_token": {next}})
		b, _ := list(t, srv, url.Values{"page_size": {"1"}, "page_token": {padded}})
		if len(a) != 1 || len(b) != 1 || a[0].ID != b[0].ID {
			t.Fatalf("padded token differs: %v vs %v", a, b)
		}
	})
}

func TestPageToken(t *testing.T) {
	id := uuid.Must(uuid.NewV7()).String()
	tok := audit.EncodePageToken(id)
	if strings.ContainsAny(tok, "+/=") {
		t.Fatalf("token %q is not unpadded base64url", tok)
	}
	got, err := audit.DecodePageToken(tok)
	if err != nil || got != id {
		t.Fatalf("DecodePageToken = %q, %v", got, err)
	}
	if _, err := audit.DecodePageToken(base64.RawURLEncoding.EncodeToString([]byte("{" + id + "}"))); err == nil {
		t.Fatal("braced uuid accepted")
	}
}
