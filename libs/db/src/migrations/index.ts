import links from './0001-links.migration';
import urlsFillfactor from './0002-urls-fillfactor.migration';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** In order; a migration, once released, is never edited: add the next number instead. */
export const migrations: Migration[] = [
  { version: 1, name: 'links', sql: links },
  { version: 2, name: 'urls-fillfactor', sql: urlsFillfactor },
];
