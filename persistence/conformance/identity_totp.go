package conformance

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pvpipe/pvauth/identity"
)

// concurrently runs fn in n goroutines released at once and counts the true results;
// an error fails the test.
func concurrently(t *testing.T, n int, fn func() (bool, error)) int32 {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := fn()
			if err != nil {
				errs <- err
				return
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return wins.Load()
}

func identityConsumeTOTPStepConcurrent(t *testing.T, p identity.Persister) {
	ctx := context.Background()
	i := NewIdentity(t, p, "totp@example.com")
	must(t, p.EnrollTOTP(ctx, i.ID, "enc-secret", 100, nil))
	for round, step := range []int64{101, 102, 200} {
		w := concurrently(t, 20, func() (bool, error) { return p.ConsumeTOTPStep(ctx, i.ID, step) })
		if w != 1 {
			t.Fatalf("round %d: %d goroutines consumed step %d, want exactly 1", round, w, step)
		}
	}
	// Older and equal steps are refused; the enrolment step counts as used.
	for _, step := range []int64{100, 150, 200} {
		if ok, err := p.ConsumeTOTPStep(ctx, i.ID, step); err != nil || ok {
			t.Fatalf("step %d accepted after 200: %v %v", step, ok, err)
		}
	}
	got, _ := p.GetIdentity(ctx, i.ID)
	if got.TOTPLastStep != 200 {
		t.Fatalf("last step %d", got.TOTPLastStep)
	}
	if ok, err := p.ConsumeTOTPStep(ctx, 999999, 1); err != nil || ok {
		t.Fatalf("unknown identity: %v %v", ok, err)
	}
}

func identityRecoveryCodesAndEnrollment(t *testing.T, p identity.Persister) {
	ctx := context.Background()
	i := NewIdentity(t, p, "codes@example.com")
	other := NewIdentity(t, p, "other@example.com")
	must(t, p.EnrollTOTP(ctx, i.ID, "enc-1", 10, []string{"c1", "c2", "c3"}))
	got, _ := p.GetIdentity(ctx, i.ID)
	if !got.MFAEnabled || got.TOTPSecret != "enc-1" || got.TOTPLastStep != 10 {
		t.Fatalf("after enroll: %+v", got)
	}
	wantErr(t, "second enroll", p.EnrollTOTP(ctx, i.ID, "enc-2", 11, []string{"d1"}), identity.ErrAlreadyEnrolled)
	// The failed enrolment changed nothing.
	got, _ = p.GetIdentity(ctx, i.ID)
	if got.TOTPSecret != "enc-1" || got.TOTPLastStep != 10 {
		t.Fatalf("failed enroll modified the identity: %+v", got)
	}
	if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "d1"); ok {
		t.Fatal("codes of a failed enrolment were stored")
	}
	wantErr(t, "enroll unknown", p.EnrollTOTP(ctx, 999999, "enc", 1, nil), identity.ErrNotFound)

	// A code is good once, only for its owner.
	if ok, err := p.ConsumeRecoveryCode(ctx, other.ID, "c1"); err != nil || ok {
		t.Fatalf("another identity used c1: %v %v", ok, err)
	}
	if w := concurrently(t, 10, func() (bool, error) { return p.ConsumeRecoveryCode(ctx, i.ID, "c1") }); w != 1 {
		t.Fatalf("c1 consumed %d times", w)
	}
	if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "c2"); !ok {
		t.Fatal("c2 refused")
	}
	if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "nope"); ok {
		t.Fatal("unknown code accepted")
	}

	// Reset clears everything; enrolment works again and replaces the codes.
	must(t, p.ResetTOTP(ctx, i.ID))
	got, _ = p.GetIdentity(ctx, i.ID)
	if got.MFAEnabled || got.TOTPSecret != "" || got.TOTPLastStep != 0 {
		t.Fatalf("after reset: %+v", got)
	}
	if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "c3"); ok {
		t.Fatal("a code survived the reset")
	}
	wantErr(t, "reset unknown", p.ResetTOTP(ctx, 999999), identity.ErrNotFound)
	must(t, p.EnrollTOTP(ctx, i.ID, "enc-3", 5, []string{"e1", "e2"}))
	if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "e2"); !ok {
		t.Fatal("new code refused")
	}
}
