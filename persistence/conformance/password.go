package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/selfservice/password"
)

// RunLoginFlows checks password.FlowPersister: lookup by token hash, attempts reserved
// up to MaxOTPFailures, a completion that happens once and gives back its attempt.
func RunLoginFlows(t *testing.T, newStore func(t *testing.T) LoginFlowStore) {
	run(t, newStore, loginFlowAttempts)
}

func loginFlowAttempts(t *testing.T, p LoginFlowStore) {
	ctx := context.Background()
	f := &password.Flow{ID: uuid.NewString(), TokenHash: "th", IdentityID: newIdentity(t, p), State: password.FlowPending,
		RememberMe: true, ExpiresAt: time.Now().Add(time.Minute)}
	must(t, p.CreateLoginFlow(ctx, f))
	_, err := p.GetLoginFlowByTokenHash(ctx, "nope")
	wantErr(t, "unknown token", err, password.ErrFlowNotFound)
	must(t, p.SetLoginFlowTOTPSecret(ctx, f.ID, "enc"))
	got, err := p.GetLoginFlowByTokenHash(ctx, "th")
	must(t, err)
	if got.ID != f.ID || !got.RememberMe || got.PendingTOTPSecret == nil || *got.PendingTOTPSecret != "enc" {
		t.Fatalf("round trip: %+v", got)
	}
	wantUTC(t, "expires_at", got.ExpiresAt, f.ExpiresAt)
	for i := range password.MaxOTPFailures {
		ok, err := p.ReserveLoginFlowAttempt(ctx, f.ID)
		wantOK(t, fmt.Sprint("reserve attempt ", i+1), ok, err, true)
	}
	ok, err := p.ReserveLoginFlowAttempt(ctx, f.ID)
	wantOK(t, "reserve beyond the limit", ok, err, false)
	ok, err = p.CompleteLoginFlow(ctx, f.ID)
	wantOK(t, "complete", ok, err, true)
	ok, err = p.CompleteLoginFlow(ctx, f.ID)
	wantOK(t, "complete again", ok, err, false)
	got, _ = p.GetLoginFlowByTokenHash(ctx, "th")
	if got.State != password.FlowCompleted || got.FailedAttempts != password.MaxOTPFailures-1 {
		t.Fatalf("completed (its attempt given back): %+v", got)
	}
	ok, err = p.ReserveLoginFlowAttempt(ctx, f.ID)
	wantOK(t, "reserve on a completed flow", ok, err, false)
}
