import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, IsString, ValidateIf } from 'class-validator';
import { REDIRECT_TYPES, type RedirectType } from '@shortener/links';
import { IsAlias, IsFutureDateTime, IsTargetUrl } from './link-validators';

export class CreateUrlDto {
  @ApiProperty({ example: 'https://example.com/some/long/path', maxLength: 2048, format: 'uri' })
  @IsString()
  @IsTargetUrl()
  url!: string;

  @ApiPropertyOptional({ example: 'my-link', pattern: '^[A-Za-z0-9_-]{3,32}$' })
  @IsOptional()
  @IsString()
  @IsAlias()
  alias?: string;

  @ApiPropertyOptional({ example: '2030-01-01T00:00:00Z', format: 'date-time' })
  @IsOptional()
  @IsString()
  @IsFutureDateTime()
  expiresAt?: string;

  @ApiPropertyOptional({ enum: REDIRECT_TYPES, default: 302 })
  @IsOptional()
  @IsIn(REDIRECT_TYPES)
  redirectType?: RedirectType;
}

export class UpdateUrlDto {
  @ApiPropertyOptional({ example: 'https://example.com/new', maxLength: 2048, format: 'uri' })
  // Absent means unchanged; @IsOptional would also let null through (a link has no "no url").
  @ValidateIf((_, value) => value !== undefined)
  @IsString()
  @IsTargetUrl()
  url?: string;

  @ApiPropertyOptional({ example: '2030-01-01T00:00:00Z', format: 'date-time', nullable: true })
  @ValidateIf((_, value) => value !== null && value !== undefined)
  @IsString()
  @IsFutureDateTime()
  expiresAt?: string | null;

  @ApiPropertyOptional({ enum: REDIRECT_TYPES })
  @ValidateIf((_, value) => value !== undefined)
  @IsIn(REDIRECT_TYPES)
  redirectType?: RedirectType;
}

export class CreatedUrlDto {
  @ApiProperty({ example: 'aB3xY9z' }) code!: string;
  @ApiProperty({ example: 'http://localhost:3000/aB3xY9z' }) shortUrl!: string;
  @ApiProperty() url!: string;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
  @ApiProperty({ format: 'date-time', nullable: true, type: String }) expiresAt!: string | null;
  @ApiProperty({ enum: REDIRECT_TYPES }) redirectType!: RedirectType;
  @ApiProperty({ description: 'Shown once: PATCH and DELETE of this link need it. Only its hash is stored.' })
  manageToken!: string;
}

export class UrlDetailsDto {
  @ApiProperty() code!: string;
  @ApiProperty() url!: string;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
  @ApiProperty({ format: 'date-time' }) updatedAt!: string;
  @ApiProperty({ format: 'date-time', nullable: true, type: String }) expiresAt!: string | null;
  @ApiProperty({ enum: REDIRECT_TYPES }) redirectType!: RedirectType;
  @ApiProperty({ description: 'Redirects served; may lag by up to 5 seconds.' }) clicks!: number;
}

export class UrlPageDto {
  @ApiProperty({ type: [UrlDetailsDto], description: 'Newest first' }) items!: UrlDetailsDto[];
  @ApiProperty({ nullable: true, type: String, description: 'Pass as cursor for the next page; null on the last one' }) nextCursor!: string | null;
}

export class ProblemDto {
  @ApiProperty() type!: string;
  @ApiProperty() title!: string;
  @ApiProperty() status!: number;
  @ApiProperty() detail!: string;
  @ApiPropertyOptional({ type: 'array', items: { type: 'object', properties: { field: { type: 'string' }, message: { type: 'string' } } } })
  errors?: { field: string; message: string }[];
}
