package media

import (
	"net/netip"
	"syscall"
	"unsafe"
)

// recvBatch is how many datagrams one recvmmsg(2) may return. A member
// sending 20 ms packets has one waiting per tick, 10 ms packets two: four
// drain a socket in one system call with room to spare, and a return of
// fewer than four says the socket is empty without a second call.
const recvBatch = 4

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// rxBatch is the caller-owned memory of one recvmmsg(2) call: the
// datagrams and their source addresses land here, nothing is allocated.
type rxBatch struct {
	msgs  [recvBatch]mmsghdr
	iovs  [recvBatch]syscall.Iovec
	names [recvBatch]syscall.RawSockaddrAny
	// ctrl takes each datagram's arrival time (SCM_TIMESTAMPNS: a cmsghdr
	// and a timespec), which the sessions ask for (SO_TIMESTAMPNS).
	ctrl [recvBatch][ctrlLen]byte
	bufs [recvBatch][maxPacket]byte
}

// ctrlLen is the room of one SCM_TIMESTAMPNS control message.
const ctrlLen = syscall.SizeofCmsghdr + int(unsafe.Sizeof(syscall.Timespec{}))

func (b *rxBatch) init() {
	for i := range b.msgs {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(maxPacket)
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.Iovlen = 1
		b.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.msgs[i].hdr.Control = &b.ctrl[i][0]
	}
}

// arrival returns when datagram i arrived by the kernel's clock (unix
// nanos), or 0 if the kernel did not say.
func (b *rxBatch) arrival(i int) int64 {
	if int(b.msgs[i].hdr.Controllen) < ctrlLen {
		return 0
	}
	c := (*syscall.Cmsghdr)(unsafe.Pointer(&b.ctrl[i][0]))
	if c.Level != syscall.SOL_SOCKET || c.Type != syscall.SCM_TIMESTAMPNS {
		return 0
	}
	return (*syscall.Timespec)(unsafe.Pointer(&b.ctrl[i][syscall.SizeofCmsghdr])).Nano()
}

// recv reads up to recvBatch datagrams without blocking and returns how
// many; datagram i is bufs[i][:msgs[i].n] from names[i]. MSG_DONTWAIT
// makes the call return at once, so it is a raw system call: the
// scheduler hand-off of syscall.Syscall (entersyscall/exitsyscall) was 3 %
// of the bridge's CPU at 1000 members, for a call that never blocks.
func (b *rxBatch) recv(fd uintptr) (int, syscall.Errno) {
	for i := range b.msgs {
		b.msgs[i].hdr.Namelen = syscall.SizeofSockaddrAny
		b.msgs[i].hdr.SetControllen(ctrlLen)
		b.msgs[i].hdr.Flags = 0
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])),
		recvBatch, syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// drainBatch reads datagrams only to discard them: every message lands,
// truncated, in one small buffer, with no source address.
type drainBatch struct {
	msgs [recvBatch]mmsghdr
	iovs [recvBatch]syscall.Iovec
	buf  [16]byte
}

func (d *drainBatch) init() {
	for i := range d.msgs {
		d.iovs[i].Base = &d.buf[0]
		d.iovs[i].SetLen(len(d.buf))
		d.msgs[i].hdr.Iov = &d.iovs[i]
		d.msgs[i].hdr.Iovlen = 1
	}
}

func (d *drainBatch) recv(fd uintptr) (int, syscall.Errno) {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&d.msgs[0])),
		recvBatch, syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// sendto is sendto(2) on a raw descriptor with a caller-owned address: no
// allocation and none of the net package's per-call locking. Like recv it
// never blocks (MSG_DONTWAIT), so it is a raw system call.
func sendto(fd uintptr, b []byte, sa *syscall.RawSockaddrInet6, saLen uint32) syscall.Errno {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(sa)), uintptr(saLen))
	return errno
}

// sockaddrFrom fills sa with ap and returns its length. An IPv6 socket
// address has room for an IPv4 one, so a session keeps the smaller of the
// two big enough for both (28 bytes rather than RawSockaddrAny's 112).
func sockaddrFrom(ap netip.AddrPort, sa *syscall.RawSockaddrInet6) uint32 {
	port := ap.Port()
	if a := ap.Addr(); a.Is4() {
		s4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: a.As4()}
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return syscall.SizeofSockaddrInet4
	}
	s6 := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
	*s6 = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: ap.Addr().As16()}
	p := (*[2]byte)(unsafe.Pointer(&s6.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return syscall.SizeofSockaddrInet6
}

// sockaddrToAddrPort converts a raw IPv4 or IPv6 socket address.
func sockaddrToAddrPort(rsa *syscall.RawSockaddrAny) (netip.AddrPort, bool) {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1])), true
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1])), true
	}
	return netip.AddrPort{}, false
}

// dupCloexec duplicates a descriptor with close-on-exec set, so that
// programs the bridge starts (espeak-ng) never inherit RTP sockets.
func dupCloexec(fd uintptr) (uintptr, error) {
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return 0, errno
	}
	return nfd, nil
}
