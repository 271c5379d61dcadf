package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"chorus/bridge"
	"chorus/store"
)

// Reads of records that are not in memory (issue 14): the bridge keeps a
// conference, member or call while it lives and for a while after; the
// store keeps it for the retention, and across restarts. A GET asks the
// bridge first, then the store, and renders either the same way.

// storeTimeout bounds one read of the store by a request.
const storeTimeout = 5 * time.Second

func (s *server) storeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), storeTimeout)
}

// stored reads a user's record; another user's is not found, like a
// missing one.
func (s *server) stored(r *http.Request, kind store.Kind, user, id string) (store.Record, bool) {
	if s.store == nil || id == "" {
		return store.Record{}, false
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	rec, err := s.store.Get(ctx, store.Key{Kind: kind, User: user, ID: id})
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("store read failed", "kind", kind, "id", id, "err", err)
		}
		return store.Record{}, false
	}
	return rec, true
}

// storedList lists records; a failed read lists none (and is logged).
func (s *server) storedList(r *http.Request, q store.Query) []store.Record {
	if s.store == nil {
		return nil
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	recs, err := s.store.List(ctx, q)
	if err != nil {
		s.log.Warn("store read failed", "kind", q.Kind, "err", err)
	}
	return recs
}

func (s *server) storedConference(r *http.Request, user, id string) (confRecord, bool) {
	rec, ok := s.stored(r, store.KindConference, user, id)
	if !ok {
		return confRecord{}, false
	}
	cr, err := decodeRecord[confRecord](rec)
	return cr, err == nil
}

func (s *server) storedCall(r *http.Request, user, id string) (bridge.CallInfo, bool) {
	rec, ok := s.stored(r, store.KindCall, user, id)
	if !ok {
		return bridge.CallInfo{}, false
	}
	in, err := decodeRecord[bridge.CallInfo](rec)
	return in, err == nil
}

func (s *server) storedMember(r *http.Request, user, confID, id string) (bridge.MemberInfo, bool) {
	rec, ok := s.stored(r, store.KindMember, user, id)
	if !ok || rec.Parent != confID {
		return bridge.MemberInfo{}, false
	}
	mr, err := decodeRecord[memberRecord](rec)
	return mr.MemberInfo, err == nil
}

// storedMembers returns the members of a conference in the store, in
// join order.
func (s *server) storedMembers(r *http.Request, user, confID string) []bridge.MemberInfo {
	var out []bridge.MemberInfo
	for _, rec := range s.storedList(r, store.Query{Kind: store.KindMember, User: user, Parent: confID, Oldest: true}) {
		if mr, err := decodeRecord[memberRecord](rec); err == nil {
			out = append(out, mr.MemberInfo)
		}
	}
	return out
}

// saved tells the outbox a record changed without an event.
func (s *server) saved(kind store.Kind, user, id string) {
	if s.outbox != nil {
		s.outbox.Saved(kind, user, id)
	}
}

// deleted tells the outbox a record is gone.
func (s *server) deleted(kind store.Kind, user, id string) {
	if s.outbox != nil {
		s.outbox.Deleted(kind, user, id)
	}
}

// dated is a rendered list entry with what orders it: newest first, then
// id, as the store orders.
type dated[T any] struct {
	t  time.Time
	id string
	v  T
}

func sortDated[T any](list []dated[T]) {
	slices.SortStableFunc(list, func(x, y dated[T]) int {
		if c := y.t.Compare(x.t); c != 0 {
			return c
		}
		return strings.Compare(y.id, x.id)
	})
}

// undeliveredJSON is an event the outbox has not delivered (extension):
// pending (still being tried, or waiting for a restart) or failed (given
// up after every retry and the fallbackUrl).
type undeliveredJSON struct {
	ID          string         `json:"id"`
	EventType   string         `json:"eventType"`
	State       string         `json:"state"`
	Error       string         `json:"error,omitempty"`
	CallbackURL string         `json:"callbackUrl,omitempty"`
	CreatedTime string         `json:"createdTime"`
	UpdatedTime string         `json:"updatedTime"`
	Event       map[string]any `json:"event"`
}

// GET /undeliveredEvents (extension): the user's callback events not
// delivered, oldest first, a page at a time; kept until the retention.
func (s *server) listUndelivered(w http.ResponseWriter, r *http.Request, user string) error {
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	out := []undeliveredJSON{}
	if s.store == nil || s.outbox == nil {
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	// One more than the page says whether another follows.
	evs, err := s.store.Undelivered(ctx, user, p.size+1, p.page*p.size)
	if err != nil {
		return errUnavailable("The event store cannot be read now")
	}
	n := p.page*p.size + len(evs)
	for _, e := range evs[:min(len(evs), p.size)] {
		it, err := s.outbox.storedItem(e)
		st := "pending"
		if e.Failed {
			st = "failed"
		}
		u := undeliveredJSON{ID: s.outbox.eventID(e.Seq), EventType: e.Type, State: st, Error: e.Error,
			CreatedTime: formatTime(e.Created), UpdatedTime: formatTime(e.Updated), Event: map[string]any{}}
		if err == nil {
			u.CallbackURL = cbRedact(it.cb.URL)
			for _, f := range it.p {
				u.Event[f.key] = f.val
			}
		}
		out = append(out, u)
	}
	pageOf(w, r, p, n)
	writeJSON(w, http.StatusOK, out)
	return nil
}
