// What the sign-in throttle counts a client address as: its network, where
// one client may use many addresses.
import { isIPv4, isIPv6 } from 'node:net';

/**
 * An IPv4 address as itself, and an IPv6 address as its /64 network: one
 * IPv6 host is given a /64 (RFC 6177) and may use any address in it, so
 * counted address by address it could guess without limit. An IPv6 address
 * that carries an IPv4 one (IPv4-mapped `::ffff:192.0.2.1` in any notation,
 * as a dual-stack socket or a proxy reports IPv4 clients; IPv4-translated,
 * RFC 2765; the NAT64 prefix 64:ff9b::/96, RFC 6052) counts as that IPv4
 * address, and one in ::/64 (loopback, IPv4-compatible) as itself: read as
 * a /64, every IPv4 client would share one count. A zone id (`fe80::1%eth0`)
 * names an interface, not a host. Anything else is returned as it is.
 */
export function networkOf(address: string): string {
  // Some proxies write the client's port too: 192.0.2.1:51234, [2001:db8::1]:443.
  const withoutPort = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(address)?.[1] ?? /^\[([^\]]+)\](?::\d+)?$/.exec(address)?.[1] ?? address;
  if (withoutPort !== address) return networkOf(withoutPort);
  const plain = address.replace(/%.*$/, '');
  if (!isIPv6(plain)) return address;
  const groups = ipv6Groups(plain);
  const zeros = (from: number, to: number) => groups.slice(from, to).every((group) => group === 0);
  const mapped = zeros(0, 5) && groups[5] === 0xffff;
  const translated = zeros(0, 4) && groups[4] === 0xffff && groups[5] === 0; // RFC 2765
  const nat64 = groups[0] === 0x64 && groups[1] === 0xff9b && zeros(2, 6);
  if (mapped || translated || nat64) {
    const ipv4 = [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
    if (isIPv4(ipv4)) return ipv4;
  }
  // Addresses in ::/64 are special (loopback, IPv4-compatible, ...), not a
  // host's network: each counts as itself.
  const hex = (list: number[]) => list.map((group) => group.toString(16)).join(':');
  if (zeros(0, 4)) return hex(groups);
  return `${hex(groups.slice(0, 4))}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address, "::" and a dotted IPv4 tail expanded. */
function ipv6Groups(address: string): number[] {
  const parse = (part: string): number[] =>
    part
      ? part.split(':').flatMap((group) => {
          if (!group.includes('.')) return [parseInt(group, 16)];
          const [a, b, c, d] = group.split('.').map(Number) as [number, number, number, number];
          return [(a << 8) | b, (c << 8) | d];
        })
      : [];
  const [head, tail] = address.split('::');
  const before = parse(head!);
  if (tail === undefined) return before;
  const after = parse(tail);
  return [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after];
}
