package identity_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/x"
)

func ptr[T any](v T) *T { return &v }

// wantErr asserts err is an *x.Error with the status and words in its message.
func wantErr(t *testing.T, err error, status int, words ...string) {
	t.Helper()
	var xe *x.Error
	if !errors.As(err, &xe) {
		t.Fatalf("error %v is not an *x.Error", err)
	}
	if xe.Status != status {
		t.Fatalf("status %d (%s), want %d", xe.Status, xe.Message, status)
	}
	for _, w := range words {
		if !strings.Contains(xe.Message, w) {
			t.Fatalf("message %q does not contain %q", xe.Message, w)
		}
	}
}

func TestManagerCreate(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		d := newDeps(t, dsn)
		m := d.m

		i, err := m.Create(ctx, identity.CreateParams{
			Email:       "  Carol@Example.com\t",
			Password:    ptr("Pässwörd-1"),
			Traits:      json.RawMessage(` {"employee": {"name": "Carol", "id": "7"}} `),
			Permissions: []string{"b", "a", "b"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if i.ID <= 0 || i.Email != "Carol@Example.com" || i.State != identity.StateActive || i.IsSuperAdmin {
			t.Fatalf("created %+v", i)
		}
		// Traits are stored in canonical compact form; permissions deduplicated in order.
		if string(i.Traits) != `{"employee":{"id":"7","name":"Carol"}}` || strings.Join(i.Permissions, ",") != "b,a" {
			t.Fatalf("traits %s permissions %v", i.Traits, i.Permissions)
		}
		got, err := m.Get(ctx, i.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.h.Compare(ctx, "Pässwörd-1", got.PasswordHash); err != nil {
			t.Fatalf("password hash: %v", err)
		}
		if d.h.NeedsRehash(got.PasswordHash) {
			t.Fatal("fresh hash needs rehash")
		}
		if string(got.Traits) != string(i.Traits) || got.PasskeyPromptStatus != identity.PromptPending {
			t.Fatalf("stored %+v", got)
		}

		// Exactly 8 and 1024 characters (runes, not bytes) are allowed.
		if _, err := m.Create(ctx, identity.CreateParams{Email: "eight@example.com", Password: ptr("ääääääää")}); err != nil {
			t.Fatalf("8-rune password: %v", err)
		}
		if _, err := m.Create(ctx, identity.CreateParams{Email: "max@example.com", Password: ptr(strings.Repeat("é", 1024))}); err != nil {
			t.Fatalf("1024-rune password: %v", err)
		}
		// 320 characters is the longest email.
		e320 := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 251) + ".com"
		if len(e320) != 320 {
			t.Fatalf("fixture length %d", len(e320))
		}
		if _, err := m.Create(ctx, identity.CreateParams{Email: e320}); err != nil {
			t.Fatalf("320-char email: %v", err)
		}

		_, err = m.Create(ctx, identity.CreateParams{Email: "CAROL@example.com"})
		wantErr(t, err, http.StatusConflict, "An identity with this email already exists.")

		bad := []struct {
			name  string
			p     identity.CreateParams
			words []string
		}{
			{"no email", identity.CreateParams{}, []string{"'email'", "required"}},
			{"no at", identity.CreateParams{Email: "carol"}, []string{"'email'"}},
			{"no domain", identity.CreateParams{Email: "carol@"}, []string{"'email'"}},
			{"two addresses", identity.CreateParams{Email: "a@example.com, b@example.com"}, []string{"'email'"}},
			{"321 chars", identity.CreateParams{Email: "a" + e320}, []string{"'email'", "320"}},
			{"7-rune password", identity.CreateParams{Email: "p@example.com", Password: ptr("äääääää")}, []string{"'password'", "at least 8"}},
			{"1025-rune password", identity.CreateParams{Email: "p@example.com", Password: ptr(strings.Repeat("é", 1025))}, []string{"'password'", "at most 1024"}},
			{"password = email", identity.CreateParams{Email: "pw@example.com", Password: ptr(" PW@example.com")}, []string{"'password'", "email"}},
			{"traits number", identity.CreateParams{Email: "t@example.com", Traits: json.RawMessage(`5`)}, []string{"'traits'", "object"}},
			{"traits bad json", identity.CreateParams{Email: "t@example.com", Traits: json.RawMessage(`{`)}, []string{"'traits'"}},
			{"traits nested", identity.CreateParams{Email: "t@example.com", Traits: json.RawMessage(`{"employee":{"avatarFileId":true}}`)}, []string{"'traits.employee.avatarFileId'"}},
			{"traits extra", identity.CreateParams{Email: "t@example.com", Traits: json.RawMessage(`{"department":{"code":"x"}}`)}, []string{"'traits.department'", "code"}},
			{"permission 101", identity.CreateParams{Email: "t@example.com", Permissions: []string{strings.Repeat("p", 101)}}, []string{"'permissions[0]'", "100"}},
			{"permission blank", identity.CreateParams{Email: "t@example.com", Permissions: []string{" "}}, []string{"'permissions[0]'"}},
			{"201 permissions", identity.CreateParams{Email: "t@example.com", Permissions: make([]string, 201)}, []string{"'permissions'", "200"}},
		}
		for _, c := range bad {
			t.Run(c.name, func(t *testing.T) {
				_, err := m.Create(ctx, c.p)
				wantErr(t, err, http.StatusBadRequest, c.words...)
			})
		}
		// 100-character permissions and 200 entries are allowed.
		perms := make([]string, 200)
		for k := range perms {
			perms[k] = strings.Repeat("p", 97) + string(rune('a'+k%26)) + string(rune('a'+k/26)) + "z"
		}
		if _, err := m.Create(ctx, identity.CreateParams{Email: "perms@example.com", Permissions: perms}); err != nil {
			t.Fatalf("200 permissions of 100 chars: %v", err)
		}
	})
}

func TestManagerUpdateAndPassword(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		d := newDeps(t, dsn)
		m := d.m
		a, err := m.Create(ctx, identity.CreateParams{Email: "dave@example.com", Traits: json.RawMessage(`{"department":{"id":"1"}}`),
			Permissions: []string{"x"}, IsSuperAdmin: true})
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Create(ctx, identity.CreateParams{Email: "erin@example.com"})
		if err != nil {
			t.Fatal(err)
		}

		// Only the given fields change.
		u, err := m.Update(ctx, a.ID, identity.PatchParams{State: ptr(identity.StateDisabled)})
		if err != nil {
			t.Fatal(err)
		}
		if u.State != identity.StateDisabled || u.Email != "dave@example.com" || !u.IsSuperAdmin ||
			string(u.Traits) != `{"department":{"id":"1"}}` || strings.Join(u.Permissions, ",") != "x" {
			t.Fatalf("partial update: %+v", u)
		}
		u, err = m.Update(ctx, a.ID, identity.PatchParams{
			Email: ptr("Dave@New.example.com"), Traits: ptr(json.RawMessage(`null`)), Permissions: ptr([]string{}),
			IsSuperAdmin: ptr(false), State: ptr(identity.StateActive),
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := m.Get(ctx, a.ID)
		if got.Email != "Dave@New.example.com" || string(got.Traits) != "{}" || len(got.Permissions) != 0 ||
			got.IsSuperAdmin || got.State != identity.StateActive || !got.UpdatedAt.Equal(u.UpdatedAt) {
			t.Fatalf("full update: %+v", got)
		}
		// The old email is free again, the new one is taken (case-insensitively).
		if _, err := m.Update(ctx, b.ID, identity.PatchParams{Email: ptr("dave@example.com")}); err != nil {
			t.Fatalf("reuse freed email: %v", err)
		}
		_, err = m.Update(ctx, b.ID, identity.PatchParams{Email: ptr("DAVE@new.example.com")})
		wantErr(t, err, http.StatusConflict, "already exists")

		// Validation comes first (400 even for unknown ids), then existence (404).
		_, err = m.Update(ctx, 999999, identity.PatchParams{State: ptr("gone")})
		wantErr(t, err, http.StatusBadRequest, "'state'")
		_, err = m.Update(ctx, a.ID, identity.PatchParams{Email: ptr("bad")})
		wantErr(t, err, http.StatusBadRequest, "'email'")
		_, err = m.Update(ctx, a.ID, identity.PatchParams{Traits: ptr(json.RawMessage(`[]`))})
		wantErr(t, err, http.StatusBadRequest, "'traits'")
		_, err = m.Update(ctx, a.ID, identity.PatchParams{Permissions: ptr([]string{""})})
		wantErr(t, err, http.StatusBadRequest, "'permissions[0]'")
		_, err = m.Update(ctx, 999999, identity.PatchParams{State: ptr(identity.StateActive)})
		wantErr(t, err, http.StatusNotFound, "Identity not found")
		_, err = m.Update(ctx, 999999, identity.PatchParams{})
		wantErr(t, err, http.StatusNotFound)

		// Passwords.
		if err := m.SetPassword(ctx, a.ID, "first password", nil); err != nil {
			t.Fatal(err)
		}
		h1, _ := d.p.GetIdentity(ctx, a.ID)
		if err := d.h.Compare(ctx, "first password", h1.PasswordHash); err != nil {
			t.Fatal(err)
		}
		wantErr(t, m.SetPassword(ctx, a.ID, "short", nil), http.StatusBadRequest, "'password'")
		wantErr(t, m.SetPassword(ctx, a.ID, "dave@NEW.example.com", nil), http.StatusBadRequest, "'password'", "email")
		wantErr(t, m.SetPassword(ctx, 999999, "long enough", nil), http.StatusNotFound)
		h2, _ := d.p.GetIdentity(ctx, a.ID)
		if h2.PasswordHash != h1.PasswordHash {
			t.Fatal("a rejected password changed the hash")
		}

		// Delete and TOTP reset map not-found to 404.
		wantErr(t, m.ResetTOTP(ctx, 999999), http.StatusNotFound)
		wantErr(t, m.Delete(ctx, 999999), http.StatusNotFound)
		if err := m.Delete(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		_, err = m.Get(ctx, a.ID)
		wantErr(t, err, http.StatusNotFound)
	})
}

// A nil schema validator still requires traits to be an object.
func TestManagerWithoutSchema(t *testing.T) {
	m := identity.NewManager(nil, nil, nil)
	if _, err := m.ValidateTraits(json.RawMessage(`{"anything":[1,2]}`)); err != nil {
		t.Fatal(err)
	}
	_, err := m.ValidateTraits(json.RawMessage(`"x"`))
	wantErr(t, err, http.StatusBadRequest, "'traits'")
	if got, err := m.ValidateTraits(nil); err != nil || string(got) != "{}" {
		t.Fatalf("nil traits: %s %v", got, err)
	}
}
