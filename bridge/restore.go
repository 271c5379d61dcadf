package bridge

import (
	"fmt"
	"strings"
)

// Restoring the records that outlive the process (issue 14): applications
// and phone numbers are configuration, not calls, so after a restart they
// come back from the store into the routing registry with their ids.
// Conferences, members and calls do not: calls cannot outlive the process,
// and their completed records are served from the store.

// RestoreApplication registers an application read back from the store,
// with its id and creation time. It is for start-up, before traffic.
func (b *Bridge) RestoreApplication(in ApplicationInfo) error {
	if !strings.HasPrefix(in.ID, ApplicationPrefix) || in.UserID == "" {
		return fmt.Errorf("restore application %q: not an application record", in.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reg.apps[in.ID] = &Application{id: in.ID, userID: in.UserID, created: in.Created, opts: in.ApplicationOptions}
	return nil
}

// RestoreNumber registers a phone number read back from the store. A
// number already held (a corrupt store holding it twice) is an error.
func (b *Bridge) RestoreNumber(in NumberInfo) error {
	if !strings.HasPrefix(in.ID, NumberPrefix) || in.UserID == "" || in.Number == "" {
		return fmt.Errorf("restore number %q: not a number record", in.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.reg.numByNum[in.Number]; ok {
		return fmt.Errorf("restore number %q: %w", in.Number, ErrNumberTaken)
	}
	n := &PhoneNumber{id: in.ID, userID: in.UserID, number: in.Number, created: in.Created, name: in.Name, appID: in.ApplicationID}
	b.reg.numByID[n.id] = n
	b.reg.numByNum[n.number] = n
	return nil
}
