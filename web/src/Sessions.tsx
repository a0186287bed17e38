import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { useCallback, useEffect, useState } from "react";
import { deviceName } from "./device";
import { Alert, Status } from "./Field";
import { describe, sessionProblem, type Problem } from "./errors";
// The generated message is named like this app's `Session` (the signed-in client).
import type { Session as DeviceSession } from "./gen/todo/auth/v1/auth_pb";
import type { Session } from "./session";

const WHEN = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function When({ time }: { time?: Timestamp }) {
  if (!time) return <>unknown</>;
  const date = timestampDate(time);
  return <time dateTime={date.toISOString()}>{WHEN.format(date)}</time>;
}

function plural(count: number | bigint, one: string, many: string): string {
  return `${count} ${BigInt(count) === 1n ? one : many}`;
}

/** What signing a device out does at once, and what may lag: its refresh token is refused now;
 * a page already open there keeps its access token until it expires (unless the task-service
 * runs in strict mode). */
const UNTIL_EXPIRY = "A page already open there may keep working for a few minutes, until its access token expires.";

/** "Where you're signed in": the user's live sessions, newest first, this one marked; any
 * other can be signed out, one at a time or all at once. Reloaded after each change, and
 * when `changed` changes (a password change elsewhere on the page). */
export function Sessions({ session, changed }: { session: Session; changed: number }) {
  const [sessions, setSessions] = useState<DeviceSession[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [done, setDone] = useState<string>();
  const [busy, setBusy] = useState(false);

  const report = (error: unknown) => {
    const found = describe(error);
    if (!sessionProblem(found)) setProblem(found);
  };

  const load = useCallback(async () => {
    try {
      const answer = await session.account.listSessions({});
      setSessions(answer.sessions);
    } catch (error) {
      report(error);
    }
  }, [session]);

  useEffect(() => {
    void load();
  }, [load, changed]);

  async function act(action: () => Promise<string>) {
    setBusy(true);
    setProblem(null);
    setDone(undefined);
    try {
      setDone(await action());
    } catch (error) {
      report(error);
    } finally {
      await load();
      setBusy(false);
    }
  }

  const revoke = (device: DeviceSession) =>
    act(async () => {
      await session.account.revokeSession({ sessionId: device.id });
      return `Signed out ${deviceName(device.userAgent)}. ${UNTIL_EXPIRY}`;
    });
  const revokeOthers = () =>
    act(async () => {
      const { revokedCount } = await session.account.revokeOtherSessions({});
      return `Signed out ${plural(revokedCount, "other session", "other sessions")}. ${UNTIL_EXPIRY}`;
    });

  const others = sessions?.filter((s) => !s.current).length ?? 0;
  return (
    <section aria-labelledby="sessions-heading">
      <h2 id="sessions-heading">Where you&rsquo;re signed in</h2>
      <Alert message={problem?.message} />
      <Status message={done} />
      {sessions === null ? (
        // Not loaded: still loading, or the alert above says why not.
        !problem && <p className="status">Loading…</p>
      ) : (
        <ul className="sessions" aria-labelledby="sessions-heading">
          {sessions.map((device) => (
            <SessionItem key={device.id} device={device} busy={busy} onRevoke={() => void revoke(device)} />
          ))}
        </ul>
      )}
      {others > 0 && (
        <button type="button" disabled={busy} onClick={() => void revokeOthers()}>
          Sign out everywhere else
        </button>
      )}
    </section>
  );
}

function SessionItem({ device, busy, onRevoke }: { device: DeviceSession; busy: boolean; onRevoke: () => void }) {
  const name = deviceName(device.userAgent);
  const since = device.createTime ? WHEN.format(timestampDate(device.createTime)) : "an unknown time";
  return (
    <li className={device.current ? "session current" : "session"}>
      <p className="device">
        <strong>{name}</strong>
        {device.current && <span className="badge">This device</span>}
      </p>
      <dl>
        <dt>Address</dt>
        <dd>{device.clientAddress || "unknown"}</dd>
        <dt>Signed in</dt>
        <dd>
          <When time={device.createTime} />
        </dd>
        <dt>Last active</dt>
        <dd>
          <When time={device.lastUseTime} />
        </dd>
        <dt>Browser</dt>
        <dd className="user-agent">{device.userAgent || "unknown"}</dd>
      </dl>
      {!device.current && (
        <button type="button" disabled={busy} aria-label={`Sign out ${name}, signed in ${since}`} onClick={onRevoke}>
          Sign out
        </button>
      )}
    </li>
  );
}
