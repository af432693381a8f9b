package passkey_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/descope/virtualwebauthn"
	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

type listItem struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	CreatedAt      string   `json:"createdAt"`
	LastUsedAt     *string  `json:"lastUsedAt"`
	IsActive       bool     `json:"isActive"`
	TransportFlags []string `json:"transportFlags"`
}

func listOwn(t testing.TB, srv *testserver.Server, token string) []listItem {
	t.Helper()
	resp := srv.Public(t, http.MethodGet, "/api/v1/auth/passkeys", token, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /passkeys: %d %s", resp.Status, resp.Body)
	}
	// Every documented field is present, lastUsedAt as null until the first use.
	var raw struct {
		Credentials []map[string]json.RawMessage `json:"credentials"`
	}
	resp.Data(t, &raw)
	for _, c := range raw.Credentials {
		for _, k := range []string{"id", "name", "createdAt", "lastUsedAt", "isActive", "transportFlags"} {
			if _, ok := c[k]; !ok {
				t.Fatalf("GET /passkeys item without %q: %s", k, resp.Body)
			}
		}
	}
	var out struct {
		Credentials []listItem `json:"credentials"`
	}
	resp.Data(t, &out)
	return out.Credentials
}

func profilePrompt(t testing.TB, srv *testserver.Server, token string) string {
	t.Helper()
	resp := srv.Public(t, http.MethodGet, "/api/v1/auth/me", token, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("/me: %d %s", resp.Status, resp.Body)
	}
	var p struct {
		PasskeyPromptStatus string `json:"passkeyPromptStatus"`
	}
	resp.Data(t, &p)
	return p.PasskeyPromptStatus
}

// TestPasskeyManagement: the user's list, rename, delete and prompt status, and the
// admin listing and deletion; another user's passkey is 404 on every route.
func TestPasskeyManagement(t *testing.T) {
	testkit.ForEachDB(t, rp(nil), func(t *testing.T, srv *testserver.Server) {
		a := newAccount(t, srv)
		b := newAccount(t, srv)

		if got := listOwn(t, srv, a.token); len(got) != 0 {
			t.Fatalf("a new user lists %+v", got)
		}
		k1 := register(t, srv, a, "Laptop")
		k2 := register(t, srv, a, "Phone")
		kb := register(t, srv, b, "B's key")

		got := listOwn(t, srv, a.token)
		if len(got) != 2 {
			t.Fatalf("list: %+v", got)
		}
		names := map[string]string{}
		for _, c := range got {
			if !c.IsActive || c.LastUsedAt != nil || c.TransportFlags == nil {
				t.Fatalf("list item: %+v", c)
			}
			names[c.ID] = c.Name
		}
		if names[k1.id] != "Laptop" || names[k2.id] != "Phone" {
			t.Fatalf("list names: %v", names)
		}
		if got := listOwn(t, srv, b.token); len(got) != 1 || got[0].ID != kb.id {
			t.Fatalf("B's list: %+v", got)
		}
		testkit.WantError(t, srv.Public(t, http.MethodGet, "/api/v1/auth/passkeys", "", nil), http.StatusUnauthorized, "")

		t.Run("rename", func(t *testing.T) {
			r := srv.Public(t, http.MethodPatch, "/api/v1/auth/passkeys/"+k1.id, a.token, map[string]string{"name": "  Work laptop  "})
			testkit.WantSuccess(t, "rename", r)
			for _, c := range listOwn(t, srv, a.token) {
				if c.ID == k1.id && c.Name != "Work laptop" {
					t.Fatalf("renamed to %q", c.Name)
				}
			}
			testkit.WantError(t, srv.Public(t, http.MethodPatch, "/api/v1/auth/passkeys/"+k1.id, a.token, map[string]string{"name": ""}), http.StatusBadRequest, "name")
			testkit.WantError(t, srv.Public(t, http.MethodPatch, "/api/v1/auth/passkeys/"+k1.id, a.token,
				map[string]string{"name": strings.Repeat("x", 256)}), http.StatusBadRequest, "name")
			testkit.WantError(t, srv.Public(t, http.MethodPatch, "/api/v1/auth/passkeys/"+k1.id, "", map[string]string{"name": "x"}), http.StatusUnauthorized, "")
		})

		t.Run("another user's passkey is 404", func(t *testing.T) {
			for _, id := range []string{kb.id, uuid.NewString(), "not-a-uuid"} {
				testkit.WantError(t, srv.Public(t, http.MethodPatch, "/api/v1/auth/passkeys/"+id, a.token, map[string]string{"name": "mine now"}),
					http.StatusNotFound, "")
				testkit.WantError(t, srv.Public(t, http.MethodDelete, "/api/v1/auth/passkeys/"+id, a.token, nil), http.StatusNotFound, "")
			}
			// B's passkey is untouched and still signs B in.
			if got := listOwn(t, srv, b.token); len(got) != 1 || got[0].Name != "B's key" || !got[0].IsActive {
				t.Fatalf("B's list after A's attempts: %+v", got)
			}
			login(t, srv, b, &kb, b.email, false)
		})

		t.Run("delete", func(t *testing.T) {
			testkit.WantSuccess(t, "delete", srv.Public(t, http.MethodDelete, "/api/v1/auth/passkeys/"+k2.id, a.token, nil))
			if got := listOwn(t, srv, a.token); len(got) != 1 || got[0].ID != k1.id {
				t.Fatalf("list after delete: %+v", got)
			}
			// The admin view keeps it, inactive.
			if c := findCred(adminPasskeys(t, srv, a.id), k2.id); c == nil || c.IsActive {
				t.Fatalf("admin view of the deleted passkey: %+v", c)
			}
			testkit.WantError(t, srv.Public(t, http.MethodDelete, "/api/v1/auth/passkeys/"+k2.id, a.token, nil), http.StatusNotFound, "")
			testkit.WantError(t, srv.Public(t, http.MethodPatch, "/api/v1/auth/passkeys/"+k2.id, a.token, map[string]string{"name": "back"}), http.StatusNotFound, "")
			sid, opts := loginBegin(t, srv, "")
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &k2, goodRP, opts), false), http.StatusUnauthorized, "")
		})

		t.Run("prompt status", func(t *testing.T) {
			c := newAccount(t, srv)
			if got := profilePrompt(t, srv, c.token); got != "pending" {
				t.Fatalf("initial passkeyPromptStatus = %q, want pending", got)
			}
			for _, st := range []string{"dismissed", "declined", "accepted", "pending"} {
				r := srv.Public(t, http.MethodPut, "/api/v1/auth/passkeys/prompt", c.token, map[string]string{"status": st})
				if r.Status != http.StatusOK {
					t.Fatalf("prompt %s: %d %s", st, r.Status, r.Body)
				}
				var res struct {
					Success bool   `json:"success"`
					Message string `json:"message"`
				}
				r.Data(t, &res)
				if !res.Success || res.Message == "" {
					t.Fatalf("prompt %s: %s", st, r.Body)
				}
				if got := profilePrompt(t, srv, c.token); got != st {
					t.Fatalf("after PUT %s, /me says %q", st, got)
				}
			}
			testkit.WantError(t, srv.Public(t, http.MethodPut, "/api/v1/auth/passkeys/prompt", c.token, map[string]string{"status": "maybe"}), http.StatusBadRequest, "status")
			testkit.WantError(t, srv.Public(t, http.MethodPut, "/api/v1/auth/passkeys/prompt", c.token, map[string]string{}), http.StatusBadRequest, "status")
			testkit.WantError(t, srv.Public(t, http.MethodPut, "/api/v1/auth/passkeys/prompt", "", map[string]string{"status": "accepted"}), http.StatusUnauthorized, "")
			// Another user's status is not touched.
			if got := profilePrompt(t, srv, a.token); got != "pending" {
				t.Fatalf("A's status changed to %q", got)
			}
		})

		t.Run("admin", func(t *testing.T) {
			cs := adminPasskeys(t, srv, a.id)
			if len(cs) != 2 || findCred(cs, k1.id) == nil || findCred(cs, k2.id) == nil {
				t.Fatalf("admin list: %+v", cs)
			}
			for _, c := range cs {
				if c.UserID != a.id || c.CredentialID == "" || c.AAGUID == "" {
					t.Fatalf("admin item: %+v", c)
				}
			}
			if r := srv.Admin(t, http.MethodGet, "/admin/identities/999999/passkeys", nil); r.Status != http.StatusNotFound {
				t.Fatalf("unknown identity: %d %s", r.Status, r.Body)
			}
			testkit.WantError(t, srv.Admin(t, http.MethodGet, "/admin/identities/abc/passkeys", nil), http.StatusBadRequest, "id")
			// Deleting B's passkey under A's id is 404; under B's it works.
			testkit.WantError(t, srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/passkeys/%s", a.id, kb.id), nil), http.StatusNotFound, "")
			testkit.WantError(t, srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/passkeys/%s", a.id, "nope"), nil), http.StatusNotFound, "")
			testkit.WantSuccess(t, "admin delete", srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/passkeys/%s", b.id, kb.id), nil))
			if got := listOwn(t, srv, b.token); len(got) != 0 {
				t.Fatalf("B still lists %+v", got)
			}
			sid, opts := loginBegin(t, srv, "")
			testkit.WantError(t, loginFinish(t, srv, sid, assert(b, &kb, goodRP, opts), false), http.StatusUnauthorized, "")
			testkit.WantError(t, srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/passkeys/%s", b.id, kb.id), nil), http.StatusNotFound, "")
			deleted := 0
			for _, e := range passkeyEvents(t, srv, b.id) {
				if e.Metadata["event"] == "delete" && e.Metadata["by"] == "admin" {
					deleted++
				}
			}
			if deleted != 1 {
				t.Fatalf("admin delete audited %d times", deleted)
			}
		})
	})
}

// TestPasskeyCheck: check tells whether an email has active passkeys, and answers an
// unknown email exactly as an email without passkeys.
func TestPasskeyCheck(t *testing.T) {
	testkit.ForEachDB(t, rp(nil), func(t *testing.T, srv *testserver.Server) {
		with := newAccount(t, srv)
		pk := register(t, srv, with, "Key")
		without := newAccount(t, srv)
		deleted := newAccount(t, srv)
		dk := register(t, srv, deleted, "Gone")
		testkit.WantSuccess(t, "delete", srv.Public(t, http.MethodDelete, "/api/v1/auth/passkeys/"+dk.id, deleted.token, nil))

		check := func(email string) *testserver.Response {
			t.Helper()
			return srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/check", "", map[string]string{"email": email})
		}
		yes := check(with.email)
		if yes.Status != http.StatusOK || !strings.Contains(string(yes.Body), `"hasPasskeys":true`) {
			t.Fatalf("check with passkeys: %d %s", yes.Status, yes.Body)
		}
		if r := check(strings.ToUpper(with.email)); !bytes.Equal(r.Body, yes.Body) {
			t.Fatalf("check is case sensitive: %s", r.Body)
		}
		none := check(without.email)
		if none.Status != http.StatusOK || !strings.Contains(string(none.Body), `"hasPasskeys":false`) {
			t.Fatalf("check without passkeys: %d %s", none.Status, none.Body)
		}
		for _, email := range []string{"unknown-" + without.email, deleted.email, "not an email"} {
			r := check(email)
			if r.Status != none.Status || !bytes.Equal(r.Body, none.Body) {
				t.Fatalf("check(%q) = %d %s, want exactly %d %s", email, r.Status, r.Body, none.Status, none.Body)
			}
		}
		// A disabled identity answers alike too.
		if r := srv.Admin(t, http.MethodPatch, fmt.Sprintf("/admin/identities/%d", with.id), map[string]any{"state": "disabled"}); r.Status != http.StatusOK {
			t.Fatalf("disable identity: %d %s", r.Status, r.Body)
		}
		if r := check(with.email); r.Status != none.Status || !bytes.Equal(r.Body, none.Body) {
			t.Fatalf("check of a disabled identity: %d %s", r.Status, r.Body)
		}
		// Nor does a disabled identity's passkey sign in.
		sid, opts := loginBegin(t, srv, "")
		testkit.WantError(t, loginFinish(t, srv, sid, assert(with, &pk, goodRP, opts), false), http.StatusUnauthorized, "")
		testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/check", "", map[string]string{}), http.StatusBadRequest, "email")
		testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/check", "", "not json"), http.StatusBadRequest, "")
	})
}

// FuzzPasskeyFinishBody posts arbitrary bytes to /passkeys/login/finish: never a 5xx.
// "@SESSION@" in the input becomes the id of a fresh login ceremony, so that mutated
// assertions get past the session lookup into parsing and verification.
func FuzzPasskeyFinishBody(f *testing.F) {
	srv := startServer(f, "memory", nil)
	a := newAccount(f, srv)
	pk := register(f, srv, a, "Fuzz")
	_, opts := loginBegin(f, srv, "")
	valid := string(assert(a, &pk, goodRP, opts))
	_, optsEmail := loginBegin(f, srv, a.email)
	validEmail := string(assert(a, &pk, goodRP, optsEmail))
	noUV := a.auth
	noUV.Options.UserNotVerified = true
	stranger := newCred()

	for _, s := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"sessionId":5}`, `{"sessionId":"@SESSION@"}`,
		`{"sessionId":"@SESSION@","response":{}}`,
		`{"sessionId":"@SESSION@","response":` + valid + `}`,
		`{"sessionId":"@SESSION@","response":` + validEmail + `,"rememberMe":true}`,
		`{"sessionId":"@SESSION@","response":` + virtualwebauthn.CreateAssertionResponse(goodRP, noUV, pk.cred, *opts) + `}`,
		`{"sessionId":"@SESSION@","response":` + virtualwebauthn.CreateAssertionResponse(goodRP, a.auth, stranger, *opts) + `}`,
		`{"sessionId":"` + uuid.NewString() + `","response":` + valid + `}`,
		`{"sessionId":"@SESSION@","response":{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA","userHandle":"AAAA"}}}`,
		"\x00\xff{",
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		if bytes.Contains(body, []byte("@SESSION@")) {
			sid, _ := loginBegin(t, srv, "")
			body = bytes.ReplaceAll(body, []byte("@SESSION@"), []byte(sid))
		}
		req, err := http.NewRequest(http.MethodPost, srv.PublicURL+"/api/v1/auth/passkeys/login/finish", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d for %q: %s", resp.StatusCode, body, raw)
		}
	})
}
