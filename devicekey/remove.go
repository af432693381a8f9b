package devicekey

import (
	"context"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
)

// Removing an authenticator is the same for the device keys of selfservice/biometric and
// the passkeys of selfservice/passkey, which may not import each other: it lives here,
// next to the other thing both share (AuthenticatorAdded).

// AuthenticatorRemover deactivates the active authenticators of a kind of an identity
// (only the one with id when id is set) and ends every session they signed in, under the
// identity's lock; session.Tokens implements it.
type AuthenticatorRemover interface {
	RemoveAuthenticators(ctx context.Context, identityID int64, kind, id string) (removed, sessions int, err error)
}

// Authenticators removes one kind of authenticator: the authenticators, the sessions
// they signed in and the audit event commit in one transaction.
type Authenticators struct {
	// Kind is session.AuthenticatorDevice or session.AuthenticatorPasskey.
	Kind string
	// NotFound is returned when an id is malformed or names no active authenticator.
	NotFound error
	// Event is the audit event of a removal from identity uid of authenticator id ("" for
	// all of them), whose metadata md it adds to.
	Event func(uid int64, id string, md map[string]any) audit.Event

	Audit      *audit.Logger
	Tokens     AuthenticatorRemover
	Identities identity.Persister
}

// Remove removes authenticator id of uid; by ("user", "admin") goes into the event.
func (a *Authenticators) Remove(ctx context.Context, uid int64, id, by string) error {
	if _, err := uuid.Parse(id); err != nil {
		return a.NotFound
	}
	_, err := a.remove(ctx, uid, id, func(_, revoked int) map[string]any {
		return map[string]any{"revokedSessions": revoked, "by": by}
	})
	return err
}

// RemoveAll removes every authenticator of an identity for an admin and returns how
// many it removed; an identity that does not exist is identity.ErrIdentityMissing.
func (a *Authenticators) RemoveAll(ctx context.Context, uid int64) (int, error) {
	if err := identity.MustExist(ctx, a.Identities, uid); err != nil {
		return 0, err
	}
	return a.remove(ctx, uid, "", func(n, revoked int) map[string]any {
		return map[string]any{"deleted": n, "revokedSessions": revoked, "by": "admin"}
	})
}

func (a *Authenticators) remove(ctx context.Context, uid int64, id string, md func(n, revoked int) map[string]any) (int, error) {
	var removed int
	err := a.Audit.Tx(ctx, func(ctx context.Context) error {
		n, revoked, err := a.Tokens.RemoveAuthenticators(ctx, uid, a.Kind, id)
		if err != nil {
			return err
		}
		if id != "" && n == 0 {
			return a.NotFound
		}
		removed = n
		return a.Audit.LogTx(ctx, a.Event(uid, id, md(n, revoked)))
	})
	return removed, err
}
