import links from './0001-links.migration';
import urlsFillfactor from './0002-urls-fillfactor.migration';
import serviceRoles from './0003-service-roles.migration';
import apiKeys from './0004-api-keys.migration';
import walHeartbeat from './0005-wal-heartbeat.migration';
import slotMoves from './0006-slot-moves.migration';
import clickFallbackClaims from './0007-click-fallback-claims.migration';
import monitorCheckpoint from './0008-monitor-checkpoint.migration';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** In order; a migration, once released, is never edited: add the next number instead. */
export const migrations: Migration[] = [
  { version: 1, name: 'links', sql: links },
  { version: 2, name: 'urls-fillfactor', sql: urlsFillfactor },
  { version: 3, name: 'service-roles', sql: serviceRoles },
  { version: 4, name: 'api-keys', sql: apiKeys },
  { version: 5, name: 'wal-heartbeat', sql: walHeartbeat },
  { version: 6, name: 'slot-moves', sql: slotMoves },
  { version: 7, name: 'click-fallback-claims', sql: clickFallbackClaims },
  { version: 8, name: 'monitor-checkpoint', sql: monitorCheckpoint },
];
