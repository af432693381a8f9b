package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/oauth2"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
)

// RunConfirmations checks confirmation.Persister: one decision per pending, unexpired
// confirmation, match failures counted until the rejection, single consumption of an
// approved one, versions of known ids only.
func RunConfirmations(t *testing.T, newStore func(t *testing.T) ConfirmationStore) {
	run(t, newStore, confirmationDecideConsume, confirmationMatchFailures, confirmationVersions)
}

// RunCIBA checks oauth2.CIBAPersister: a request reads back as stored, unknown ids are
// not found, and a poll within the interval of the last one is refused.
func RunCIBA(t *testing.T, newStore func(t *testing.T) CIBAStore) {
	run(t, newStore, cibaPolls)
}

func newConfirmation(t *testing.T, p ConfirmationStore, expires time.Time) *confirmation.Confirmation {
	t.Helper()
	c := &confirmation.Confirmation{ID: uuid.NewString(), IdentityID: newIdentity(t, p), ActionType: "login",
		ChallengeHash: "ch", Status: confirmation.StatusPending, ExpiresAt: expires}
	must(t, p.CreateConfirmation(context.Background(), c))
	return c
}

func confirmationDecideConsume(t *testing.T, p ConfirmationStore) {
	ctx := context.Background()
	now := time.Now()
	c := newConfirmation(t, p, now.Add(time.Minute))
	got, err := p.GetConfirmation(ctx, c.ID)
	must(t, err)
	if got.Status != confirmation.StatusPending || got.ApprovedAt != nil || got.IdentityID != c.IdentityID {
		t.Fatalf("round trip: %+v", got)
	}
	_, err = p.GetConfirmation(ctx, "nope")
	wantErr(t, "unknown", err, confirmation.ErrNotFound)
	ok, err := p.ConsumeConfirmation(ctx, c.ID, now)
	wantOK(t, "consume a pending one", ok, err, false)
	ok, err = p.DecideConfirmation(ctx, c.ID, confirmation.StatusApproved, ptr("dev"), nil, now)
	wantOK(t, "approve", ok, err, true)
	ok, err = p.DecideConfirmation(ctx, c.ID, confirmation.StatusRejected, nil, ptr("late"), now)
	wantOK(t, "decide again", ok, err, false)
	got, _ = p.GetConfirmation(ctx, c.ID)
	if got.Status != confirmation.StatusApproved || got.ApprovedAt == nil || *got.DeviceID != "dev" {
		t.Fatalf("approved: %+v", got)
	}
	ok, err = p.ConsumeConfirmation(ctx, c.ID, now)
	wantOK(t, "consume", ok, err, true)
	ok, err = p.ConsumeConfirmation(ctx, c.ID, now)
	wantOK(t, "consume again", ok, err, false)

	expired := newConfirmation(t, p, now.Add(-time.Minute))
	ok, err = p.DecideConfirmation(ctx, expired.ID, confirmation.StatusApproved, nil, nil, now)
	wantOK(t, "approve an expired one", ok, err, false)
}

func confirmationMatchFailures(t *testing.T, p ConfirmationStore) {
	ctx := context.Background()
	now := time.Now()
	c := newConfirmation(t, p, now.Add(time.Minute))
	for i := range confirmation.MaxMatchFailures {
		ok, err := p.CountMatchFailure(ctx, c.ID, now)
		wantOK(t, "count a failure", ok, err, true)
		ok, err = p.RejectOnMatchFailures(ctx, c.ID, confirmation.MaxMatchFailures, "too many", now)
		wantOK(t, "reject below the limit", ok, err, i == confirmation.MaxMatchFailures-1)
	}
	got, _ := p.GetConfirmation(ctx, c.ID)
	if got.Status != confirmation.StatusRejected || got.MatchFailures != confirmation.MaxMatchFailures || *got.Reason != "too many" {
		t.Fatalf("rejected on failures: %+v", got)
	}
	ok, err := p.CountMatchFailure(ctx, c.ID, now)
	wantOK(t, "count on a rejected one", ok, err, false)
	ok, err = p.RejectOnMatchFailures(ctx, c.ID, confirmation.MaxMatchFailures, "again", now)
	wantOK(t, "reject again", ok, err, false)
}

func confirmationVersions(t *testing.T, p ConfirmationStore) {
	ctx := context.Background()
	a, b := newConfirmation(t, p, time.Now().Add(time.Minute)), newConfirmation(t, p, time.Now().Add(time.Minute))
	v, err := p.GetConfirmationVersions(ctx, []string{a.ID, b.ID, "nope"})
	must(t, err)
	if len(v) != 2 || v[a.ID].Status != confirmation.StatusPending || v[a.ID].UpdatedAt.Location() != time.UTC {
		t.Fatalf("versions: %+v", v)
	}
	if v, err = p.GetConfirmationVersions(ctx, nil); err != nil || len(v) != 0 {
		t.Fatalf("no ids: %v %v", v, err)
	}
}

func cibaPolls(t *testing.T, p CIBAStore) {
	ctx := context.Background()
	now := time.Now()
	newClient(t, p, "c")
	c := newConfirmation(t, p, now.Add(time.Minute))
	r := &oauth2.CIBARequest{ID: "auth-req-" + uuid.NewString(), ConfirmationID: c.ID, ClientID: "c", IdentityID: c.IdentityID,
		Scope: "openid", Interval: int(oauth2.CIBAInterval / time.Second), ExpiresAt: now.Add(time.Minute)}
	must(t, p.CreateCIBARequest(ctx, r))
	got, err := p.GetCIBARequest(ctx, r.ID)
	must(t, err)
	if got.ConfirmationID != c.ID || got.Scope != "openid" || got.LastPolledAt != nil {
		t.Fatalf("round trip: %+v", got)
	}
	wantUTC(t, "expires_at", got.ExpiresAt, got.ExpiresAt)
	_, err = p.GetCIBARequest(ctx, "nope")
	wantErr(t, "unknown", err, oauth2.ErrCIBARequestNotFound)
	ok, err := p.MarkCIBAPolled(ctx, r.ID, now)
	wantOK(t, "first poll", ok, err, true)
	ok, err = p.MarkCIBAPolled(ctx, r.ID, now.Add(oauth2.CIBAInterval-time.Second))
	wantOK(t, "a poll within the interval", ok, err, false)
	ok, err = p.MarkCIBAPolled(ctx, r.ID, now.Add(oauth2.CIBAInterval))
	wantOK(t, "a poll after the interval", ok, err, true)
	if got, _ = p.GetCIBARequest(ctx, r.ID); got.LastPolledAt == nil {
		t.Fatal("last poll not stored")
	}
}
