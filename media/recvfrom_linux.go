package media

import (
	"net/netip"
	"syscall"
	"unsafe"
)

// recvfrom is one non-blocking recvfrom(2) that, unlike syscall.Recvfrom,
// allocates nothing: the source address lands in caller-owned memory.
func recvfrom(fd uintptr, buf []byte, rsa *syscall.RawSockaddrAny, rsaLen *uint32) (int, syscall.Errno) {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), syscall.MSG_DONTWAIT,
		uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(rsaLen)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
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
