// Names a typo away from ones we know: a mistyped environment variable, CLI
// command or option. Said, not acted on: the user meant one of ours, but
// which one is theirs to say.

/** Edits (insert, delete, replace, swap two neighbours) from `a` to `b` (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The known name `name` is a typo of, if any: an edit or two (a swap of
 * neighbours is one) in a long name, one in a shorter one; the nearest where
 * several are near.
 */
export function typoOf(name: string, known: Iterable<string>): string | undefined {
  const allowed = name.length >= 8 ? 2 : 1;
  let nearest: { name: string; distance: number } | undefined;
  for (const candidate of known) {
    if (candidate === name || Math.abs(candidate.length - name.length) > allowed) continue;
    const distance = editDistance(candidate, name);
    if (distance <= allowed && (!nearest || distance < nearest.distance)) nearest = { name: candidate, distance };
  }
  return nearest?.name;
}
