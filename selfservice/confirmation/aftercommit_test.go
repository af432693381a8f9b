package confirmation_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/pvpipe/pvauth/driver"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
	"github.com/pvpipe/pvauth/x"
)

// goneAfterConsume is the real persister, except that the database goes away the moment
// a consumption has committed.
type goneAfterConsume struct {
	confirmation.Persister
	committed atomic.Bool
}

func (g *goneAfterConsume) ConsumeConfirmation(ctx context.Context, id string, now time.Time) (bool, error) {
	ok, err := g.Persister.ConsumeConfirmation(ctx, id, now)
	g.committed.Store(ok && err == nil)
	return ok, err
}

func (g *goneAfterConsume) GetConfirmation(ctx context.Context, id string) (*confirmation.Confirmation, error) {
	if g.committed.Load() {
		return nil, errGone
	}
	return g.Persister.GetConfirmation(ctx, id)
}

// consumeDeps is the registry with that persister.
type consumeDeps struct {
	*driver.Registry
	p confirmation.Persister
}

func (d consumeDeps) ConfirmationPersister() confirmation.Persister { return d.p }

var errGone = x.Unavailable(errors.New("database went away after the commit"))

// A consumption that committed is answered as one (API.md §9: nothing that can fail runs
// after the commit): the service reads the confirmation before it consumes it, so a
// database lost right after the commit cannot turn it into an error, whose retry would
// then be refused as "already consumed".
func TestConsumeAnsweredOnceCommitted(t *testing.T) {
	srv := testserver.Start(t, testdb.SQLiteFile(t), nil)
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, false)
	c := ctInit(t, srv, u, "payment.approve", map[string]any{"amount": 10})
	id := testkit.Str(c["confirmationId"])
	if r := ctVerify(t, srv, u, id, d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))); r.Status != http.StatusOK {
		t.Fatalf("verify: %d %s", r.Status, r.Body)
	}
	gone := &goneAfterConsume{Persister: srv.Registry.ConfirmationPersister()}
	svc := confirmation.NewService(consumeDeps{Registry: srv.Registry, p: gone})
	defer svc.Shutdown()
	got, err := svc.Consume(t.Context(), id)
	if err != nil {
		t.Fatalf("a committed consumption answered %v", err)
	}
	if got.ID != id || got.ConsumedAt == nil || got.Status != confirmation.StatusApproved || !gone.committed.Load() {
		t.Fatalf("consumed: %+v (committed %v)", got, gone.committed.Load())
	}
	// And it is consumed, exactly once.
	if _, err := srv.Registry.ConfirmationService().Consume(t.Context(), id); !errors.Is(err, confirmation.ErrNotConsumable) {
		t.Fatalf("second consumption: %v", err)
	}
}
