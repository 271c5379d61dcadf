package bridge

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Applications and phone numbers (issue 13; design.md routing (b)).
//
// An application is where a user wants to hear about calls to its
// numbers; a phone number is the user part of a dialled Request-URI,
// allocated to one user and optionally assigned to one of its
// applications. A dial-in to an assigned number rings while the
// application is told (an incomingcall event) and decides; numbers that
// are not assigned, and numbers nobody allocated, route as before
// (conference id, a live conference's from, auto-create).
//
// A number is held by at most one user (ErrNumberTaken). It may also be
// the from of a live conference of the same user (a room that SIP-only
// callers reach): that is allowed, and the application wins the routing
// while the number is assigned, because the owner asked for it
// explicitly; unassigning the number gives the dial-ins back to the room.
// Another user may neither host a room on an allocated number nor
// allocate the from of a live room of someone else (ErrNumberInUse), and
// a room that dial-in auto-creates on an allocated number belongs to the
// number's owner.

// ID prefixes of applications and numbers, as Catapult's (a-…, n-…).
const (
	ApplicationPrefix = "a-"
	NumberPrefix      = "n-"
)

// Defaults of the per-user caps.
const (
	DefaultMaxApplicationsPerUser = 100
	DefaultMaxNumbersPerUser      = 1000
	DefaultIncomingCallTimeout    = 60 * time.Second
)

// ApplicationOptions are the properties of an application.
type ApplicationOptions struct {
	Name string
	// Callback is where a call's events go: URL is incomingCallUrl,
	// FallbackURL incomingCallFallbackUrl, Timeout
	// incomingCallUrlCallbackTimeout, Method callbackHttpMethod.
	Callback Callback
	// AutoAnswer answers an incoming call at once; without it the call
	// rings until the application answers, rejects or the timeout.
	AutoAnswer bool
}

// Application is a user's handler of incoming calls.
type Application struct {
	id      string
	userID  string
	created time.Time

	mu   sync.Mutex
	opts ApplicationOptions
}

// ApplicationInfo is a snapshot of an application.
type ApplicationInfo struct {
	ID, UserID string
	Created    time.Time
	ApplicationOptions
}

// ID returns the application id.
func (a *Application) ID() string { return a.id }

// UserID returns the owner.
func (a *Application) UserID() string { return a.userID }

// Info returns a snapshot.
func (a *Application) Info() ApplicationInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return ApplicationInfo{ID: a.id, UserID: a.userID, Created: a.created, ApplicationOptions: a.opts}
}

// Callback returns where the events of the application's calls go.
func (a *Application) Callback() Callback {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.opts.Callback
}

// Update replaces the application's properties.
func (a *Application) Update(opts ApplicationOptions) {
	a.mu.Lock()
	a.opts = opts
	a.mu.Unlock()
}

// PhoneNumber is a number allocated to a user.
type PhoneNumber struct {
	id      string
	userID  string
	number  string
	created time.Time

	mu    sync.Mutex
	name  string
	appID string
}

// NumberInfo is a snapshot of a phone number.
type NumberInfo struct {
	ID, UserID, Number, Name, ApplicationID string
	Created                                 time.Time
}

// ID returns the number's id.
func (n *PhoneNumber) ID() string { return n.id }

// UserID returns the owner.
func (n *PhoneNumber) UserID() string { return n.userID }

// Number returns the number itself (the Request-URI user part).
func (n *PhoneNumber) Number() string { return n.number }

// Info returns a snapshot.
func (n *PhoneNumber) Info() NumberInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return NumberInfo{ID: n.id, UserID: n.userID, Number: n.number, Name: n.name, ApplicationID: n.appID, Created: n.created}
}

// registry holds the applications and numbers; it is guarded by
// Bridge.mu, which routing holds too.
type registry struct {
	apps     map[string]*Application
	numByID  map[string]*PhoneNumber
	numByNum map[string]*PhoneNumber
}

func newRegistry() registry {
	return registry{apps: map[string]*Application{}, numByID: map[string]*PhoneNumber{}, numByNum: map[string]*PhoneNumber{}}
}

// CreateApplication makes an application of user. A user holds at most
// Config.MaxApplicationsPerUser (ErrLimit).
func (b *Bridge) CreateApplication(user string, opts ApplicationOptions) (*Application, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, a := range b.reg.apps {
		if a.userID == user {
			n++
		}
	}
	if n >= b.cfg.MaxApplicationsPerUser {
		return nil, fmt.Errorf("create application: %d of %d: %w", n, b.cfg.MaxApplicationsPerUser, ErrLimit)
	}
	a := &Application{id: newID(ApplicationPrefix), userID: user, created: b.cfg.Now(), opts: opts}
	b.reg.apps[a.id] = a
	return a, nil
}

// Application returns an application by id.
func (b *Bridge) Application(id string) (*Application, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.reg.apps[id]
	return a, ok
}

// Applications returns the applications of a user, oldest first.
func (b *Bridge) Applications(user string) []*Application {
	b.mu.Lock()
	var out []*Application
	for _, a := range b.reg.apps {
		if a.userID == user {
			out = append(out, a)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y *Application) int {
		if c := x.created.Compare(y.created); c != 0 {
			return c
		}
		return strings.Compare(x.id, y.id)
	})
	return out
}

// DeleteApplication forgets an application. The numbers assigned to it
// stay allocated and are unassigned, so their dial-ins route as numbers
// without an application do. Calls of the application already ringing or
// answered go on; their later events go to no application.
func (b *Bridge) DeleteApplication(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.reg.apps[id]; !ok {
		return fmt.Errorf("delete application %s: %w", id, ErrNotFound)
	}
	delete(b.reg.apps, id)
	for _, n := range b.reg.numByID {
		n.mu.Lock()
		if n.appID == id {
			n.appID = ""
		}
		n.mu.Unlock()
	}
	return nil
}

// NumberOptions are the properties of a phone number. ApplicationID ""
// means not assigned.
type NumberOptions struct {
	Name, ApplicationID string
}

// AllocateNumber allocates number to user. A number is held by at most one
// user (ErrNumberTaken); a user holds at most Config.MaxNumbersPerUser
// (ErrLimit); the application, if any, must be the user's (ErrNotFound).
func (b *Bridge) AllocateNumber(user, number string, opts NumberOptions) (*PhoneNumber, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.reg.numByNum[number]; ok {
		return nil, fmt.Errorf("allocate %q: %w", number, ErrNumberTaken)
	}
	if c := b.holder(number); c != nil && c.userID != user {
		return nil, fmt.Errorf("allocate %q: %w", number, ErrNumberInUse)
	}
	if err := b.checkAppLocked(user, opts.ApplicationID); err != nil {
		return nil, fmt.Errorf("allocate %q: %w", number, err)
	}
	n := 0
	for _, x := range b.reg.numByID {
		if x.userID == user {
			n++
		}
	}
	if n >= b.cfg.MaxNumbersPerUser {
		return nil, fmt.Errorf("allocate %q: %d of %d: %w", number, n, b.cfg.MaxNumbersPerUser, ErrLimit)
	}
	pn := &PhoneNumber{id: newID(NumberPrefix), userID: user, number: number, created: b.cfg.Now(),
		name: opts.Name, appID: opts.ApplicationID}
	b.reg.numByID[pn.id] = pn
	b.reg.numByNum[number] = pn
	return pn, nil
}

// checkAppLocked checks that appID is "" or an application of user.
// b.mu is held.
func (b *Bridge) checkAppLocked(user, appID string) error {
	if appID == "" {
		return nil
	}
	if a, ok := b.reg.apps[appID]; !ok || a.userID != user {
		return fmt.Errorf("application %s: %w", appID, ErrNotFound)
	}
	return nil
}

// UpdateNumber changes a number's name and application (the application
// must be the number's owner's, ErrNotFound).
func (b *Bridge) UpdateNumber(n *PhoneNumber, opts NumberOptions) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkAppLocked(n.userID, opts.ApplicationID); err != nil {
		return fmt.Errorf("update %s: %w", n.id, err)
	}
	n.mu.Lock()
	n.name, n.appID = opts.Name, opts.ApplicationID
	n.mu.Unlock()
	return nil
}

// PhoneNumber returns a number by its id or by the number itself.
func (b *Bridge) PhoneNumber(idOrNumber string) (*PhoneNumber, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n, ok := b.reg.numByID[idOrNumber]; ok {
		return n, true
	}
	n, ok := b.reg.numByNum[idOrNumber]
	return n, ok
}

// PhoneNumbers returns the numbers of a user, oldest first.
func (b *Bridge) PhoneNumbers(user string) []*PhoneNumber {
	b.mu.Lock()
	var out []*PhoneNumber
	for _, n := range b.reg.numByID {
		if n.userID == user {
			out = append(out, n)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y *PhoneNumber) int {
		if c := x.created.Compare(y.created); c != 0 {
			return c
		}
		return strings.Compare(x.id, y.id)
	})
	return out
}

// ReleaseNumber gives a number up: it routes as a number nobody holds.
func (b *Bridge) ReleaseNumber(n *PhoneNumber) {
	b.mu.Lock()
	if b.reg.numByID[n.id] == n {
		delete(b.reg.numByID, n.id)
		delete(b.reg.numByNum, n.number)
	}
	b.mu.Unlock()
}

// AppRoute is where a dial-in to an application's number goes.
type AppRoute struct {
	App    *Application
	Number *PhoneNumber
}

// RouteApplication looks a dialled number up (design.md routing (b)): if
// it is allocated and assigned to an application, the call is that
// application's. ok is false for every other number, which then routes
// as Route decides.
func (b *Bridge) RouteApplication(number string) (AppRoute, bool) {
	if number == "" || strings.HasPrefix(number, ConferencePrefix) {
		return AppRoute{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n, ok := b.reg.numByNum[number]
	if !ok {
		return AppRoute{}, false
	}
	n.mu.Lock()
	appID := n.appID
	n.mu.Unlock()
	a, ok := b.reg.apps[appID]
	if !ok {
		return AppRoute{}, false
	}
	return AppRoute{App: a, Number: n}, true
}
